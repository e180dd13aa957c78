package export

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/feeder/export/jsonenc"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// Syslog message formats.
const (
	FormatRFC5424 = "rfc5424" // MSG is the event's JSON line
	FormatCEF     = "cef"     // MSG is an ArcSight CEF record
)

// SyslogOptions configure a Syslog exporter.
type SyslogOptions struct {
	// Address is unix:///dev/log, udp://host:514 or tcp://host:514.
	Address string
	Format  string // FormatRFC5424 (default) or FormatCEF
	// Facility is the syslog facility number; default 16 (local0).
	Facility int
	Logs     bool   // also forward logs, not only alerts
	Version  string // agent version, for CEF's Device Version
	Hostname string // HOSTNAME when the event has none; default os.Hostname
}

// Syslog sends alerts (and optionally logs) to a syslog server, one message
// per event: RFC 5424 framing, over a unix datagram or stream socket, UDP,
// or TCP with octet-counting framing (RFC 6587). It reconnects on a write
// error and gives up on a message after one retry; the message is counted
// as lost and the exporter is failing (Stage) until a send succeeds again.
// While failing, it tries again only after a backoff, so an unreachable
// server does not cost a connect timeout per message.
type Syslog struct {
	health
	opts    SyslogOptions
	network string // unixgram, unix, udp, tcp
	addr    string
	conn    net.Conn
	pid     string
}

// writeTimeout bounds one send, so a stuck TCP server only costs this
// exporter's own queue.
const writeTimeout = 5 * time.Second

// NewSyslog checks the options; the connection is made on first use.
func NewSyslog(o SyslogOptions) (*Syslog, error) {
	if o.Format == "" {
		o.Format = FormatRFC5424
	}
	if o.Format != FormatRFC5424 && o.Format != FormatCEF {
		return nil, fmt.Errorf("export: syslog format %q: want %s or %s", o.Format, FormatRFC5424, FormatCEF)
	}
	if o.Facility == 0 {
		o.Facility = 16
	}
	if o.Facility < 0 || o.Facility > 23 {
		return nil, fmt.Errorf("export: syslog facility %d out of range 0-23", o.Facility)
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	u, err := url.Parse(o.Address)
	if err != nil {
		return nil, fmt.Errorf("export: syslog address %q: %w", o.Address, err)
	}
	s := &Syslog{opts: o, pid: strconv.Itoa(os.Getpid())}
	switch u.Scheme {
	case "unix":
		s.network, s.addr = "unixgram", u.Path
	case "udp", "tcp":
		if u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("export: syslog address %q: want %s://HOST:PORT", o.Address, u.Scheme)
		}
		s.network, s.addr = u.Scheme, u.Host
	default:
		return nil, fmt.Errorf("export: syslog address %q: want unix:///PATH, udp://HOST:PORT or tcp://HOST:PORT", o.Address)
	}
	if s.addr == "" {
		return nil, fmt.Errorf("export: syslog address %q has no path", o.Address)
	}
	return s, nil
}

// WriteAlert sends one alert.
func (s *Syslog) WriteAlert(a *kubearmorpb.Alert) error {
	sev := 5 // notice: an audited event
	if a.Action == "Block" || a.Type == "SystemEvent" {
		sev = 4 // warning
	}
	var body []byte
	if s.opts.Format == FormatCEF {
		body = []byte(CEFAlert(a, s.opts.Version))
	} else {
		body = jsonenc.AppendAlert(nil, a)
	}
	return s.send(sev, a.Type, a.HostName, a.Timestamp, a.UpdatedTime, body)
}

// WriteLog sends one log when the exporter forwards logs.
func (s *Syslog) WriteLog(l *kubearmorpb.Log) error {
	if !s.opts.Logs {
		return nil
	}
	var body []byte
	if s.opts.Format == FormatCEF {
		body = []byte(CEFLog(l, s.opts.Version))
	} else {
		body = jsonenc.AppendLog(nil, l)
	}
	return s.send(6, l.Type, l.HostName, l.Timestamp, l.UpdatedTime, body)
}

// Flush is a no-op: every message is sent as it is written.
func (s *Syslog) Flush() error { return nil }

// Close closes the connection.
func (s *Syslog) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Message formats one RFC 5424 message (without transport framing).
func (s *Syslog) Message(severity int, msgID, host string, ts int64, updated string, body []byte) []byte {
	if host == "" {
		host = s.opts.Hostname
	}
	t, err := time.Parse(time.RFC3339Nano, updated)
	if err != nil {
		t = time.Unix(ts, 0)
	}
	if msgID == "" {
		msgID = "-"
	}
	var b []byte
	b = fmt.Appendf(b, "<%d>1 %s %s kubearmor %s %s - ", s.opts.Facility*8+severity,
		t.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), header(host, 255), s.pid, header(msgID, 32))
	return append(b, body...)
}

// header makes a value a valid RFC 5424 header field: printable US-ASCII,
// no spaces, bounded length, "-" when empty.
func header(v string, max int) string {
	v = strings.Map(func(r rune) rune {
		if r < 33 || r > 126 {
			return '_'
		}
		return r
	}, v)
	if len(v) > max {
		v = v[:max]
	}
	if v == "" {
		return "-"
	}
	return v
}

func (s *Syslog) send(severity int, msgID, host string, ts int64, updated string, body []byte) error {
	if !s.receive(1) {
		return nil // failing, next attempt not yet due: counted as lost
	}
	msg := s.Message(severity, msgID, host, ts, updated, body)
	switch s.network {
	case "tcp":
		msg = append([]byte(strconv.Itoa(len(msg))+" "), msg...)
	case "unix":
		msg = append(msg, '\n') // stream sockets of local daemons split on newlines
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if s.conn == nil {
			if err = s.dial(); err != nil {
				continue
			}
		}
		s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err = s.conn.Write(msg); err == nil {
			s.wrote(1)
			return nil
		}
		s.conn.Close()
		s.conn = nil
	}
	err = fmt.Errorf("export: syslog %s://%s: %w", s.network, s.addr, err)
	s.failed(1, err)
	return err
}

func (s *Syslog) dial() error {
	c, err := net.DialTimeout(s.network, s.addr, writeTimeout)
	if err != nil && s.network == "unixgram" && errors.Is(err, syscall.EPROTOTYPE) {
		// Some syslog daemons listen on a stream socket.
		s.network = "unix"
		c, err = net.DialTimeout(s.network, s.addr, writeTimeout)
	}
	if err != nil {
		return err
	}
	s.conn = c
	return nil
}
