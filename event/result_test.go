package event

import "testing"

func TestResultText(t *testing.T) {
	tests := []struct {
		retval int64
		want   string
	}{
		{0, "Passed"},
		{3, "Passed"},
		{-1, "Operation not permitted"},
		{-2, "No such file or directory"},
		{-13, "Permission denied"},
		{-111, "Connection refused"},
		{-115, "Operation now in progress"},
		{-4000, "Unknown error"},
		{-5000, "Unknown error"},
	}
	for _, tt := range tests {
		if got := ResultText(tt.retval); got != tt.want {
			t.Errorf("ResultText(%d) = %q, want %q", tt.retval, got, tt.want)
		}
	}
}
