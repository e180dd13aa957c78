package client

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/statuspb"
)

func TestWriteEtcd(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return now.Add(-d).Unix() }
	local := func(d time.Duration) string { return now.Add(-d).Local().Format("2006-01-02 15:04:05") }
	for _, tc := range []struct {
		name string
		e    *statuspb.EtcdSource
		want []string // lines, in order
	}{
		{"off", nil, nil},
		{"connected", &statuspb.EtcdSource{Endpoints: "http://10.0.0.5:2379", Prefix: "/kubearmor/policies/", State: "connected",
			Revision: 42, Keys: 3, LastSyncUnix: at(2 * time.Second), CacheWrittenUnix: at(time.Minute), HostKey: "/kubearmor/hosts/web-1"},
			[]string{
				"Etcd:       connected, http://10.0.0.5:2379 /kubearmor/policies/, revision 42, 3 keys",
				"  last sync   " + local(2*time.Second) + " (2s ago)",
				"  cache       " + local(time.Minute) + " (1m0s ago)",
				"  host key    /kubearmor/hosts/web-1",
			}},
		{"down since start, from the cache", &statuspb.EtcdSource{Endpoints: "https://a:2379,https://b:2379", Prefix: "/p/", State: "disconnected",
			Keys: 2, FromCache: true, CacheWrittenUnix: at(26 * time.Hour), Error: "context deadline exceeded"},
			[]string{
				"Etcd:       disconnected, https://a:2379,https://b:2379 /p/, revision 0, 2 keys, enforcing the cache (etcd not read since start)",
				"  error       context deadline exceeded",
				"  last sync   never",
				"  cache       " + local(26*time.Hour) + " (26h0m0s ago)",
			}},
		{"never read, no cache", &statuspb.EtcdSource{Endpoints: "http://e:2379", Prefix: "/p/", State: "connecting"},
			[]string{
				"Etcd:       connecting, http://e:2379 /p/, revision 0, 0 keys",
				"  last sync   never",
				"  cache       never",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			writeEtcd(&b, tc.e, now)
			want := ""
			if tc.want != nil {
				want = strings.Join(tc.want, "\n") + "\n"
			}
			if b.String() != want {
				t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
			}
		})
	}
}
