package agent

import "time"

// timeLayout is upstream's UpdatedTime: UTC, microseconds.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// updatedTime is t.UTC().Format(timeLayout), written digit by digit: every
// alert and log carries one, and time.Format's general layout walk was
// the largest single cost of a log after its allocations. Years outside
// 0000-9999 (never a kernel's clock) take time.Format, whose output for
// them the fixed layout does not describe.
func updatedTime(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(timeLayout)
	}
	hour, minute, sec := t.Clock()
	var b [len(timeLayout)]byte
	put := func(at, width, v int) {
		for i := at + width - 1; i >= at; i-- {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, year)
	b[4] = '-'
	put(5, 2, int(month))
	b[7] = '-'
	put(8, 2, day)
	b[10] = 'T'
	put(11, 2, hour)
	b[13] = ':'
	put(14, 2, minute)
	b[16] = ':'
	put(17, 2, sec)
	b[19] = '.'
	put(20, 6, t.Nanosecond()/1000)
	b[26] = 'Z'
	return string(b[:])
}
