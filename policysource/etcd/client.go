// Package etcd reads policy documents from an etcd key prefix into the
// policy store, one document per key, and keeps this host's status under a
// lease. The directory stays the first source: the store takes etcd's
// documents beside its files (policystore.Store.Update), through the same
// checks.
package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Config says how to reach etcd.
type Config struct {
	Endpoints    []string
	CA           string // CA bundle of the servers' certificates (https)
	Cert, Key    string // client certificate for TLS client auth
	User         string
	PasswordFile string
}

// Dial makes a client. It does not wait for a connection: the source and
// the publisher work while etcd is unreachable and catch up when it is back.
func Dial(c Config) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(), // our own log says what matters
	}
	if c.CA != "" || c.Cert != "" || anyHTTPS(c.Endpoints) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CA != "" {
			pem, err := os.ReadFile(c.CA)
			if err != nil {
				return nil, fmt.Errorf("etcdCA: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("etcdCA: %s holds no PEM certificate", c.CA)
			}
		}
		if c.Cert != "" {
			pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
			if err != nil {
				return nil, fmt.Errorf("etcdCert/etcdKey: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLS = tc
	}
	if c.User != "" {
		pw, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("etcdPasswordFile: %w", err)
		}
		cfg.Username, cfg.Password = c.User, strings.TrimRight(string(pw), "\r\n")
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	return cli, nil
}

func anyHTTPS(eps []string) bool {
	for _, e := range eps {
		if strings.HasPrefix(e, "https://") {
			return true
		}
	}
	return false
}
