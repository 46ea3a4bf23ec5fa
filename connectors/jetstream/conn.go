package jetstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnConfig says how to connect to a NATS server. Only URL is required.
// At most one of User/Password, Token, CredsFile and NKeySeedFile may be set.
type ConnConfig struct {
	// URL is the server URL, or several separated by commas, for example
	// nats://127.0.0.1:4222. Use tls:// (or set TLS) for TLS.
	URL string
	// User and Password authenticate with a user name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// CredsFile is a user credentials file (JWT and NKey seed), as made by nsc.
	CredsFile string
	// NKeySeedFile is a file holding a user NKey seed.
	NKeySeedFile string
	// TLS configures TLS; the zero value means none unless the URL asks for it.
	TLS TLSConfig
	// Name is the connection name the server shows (in monitoring, in its log).
	Name string
	// ConnectTimeout bounds the initial connection; 0 means 5 s.
	ConnectTimeout time.Duration
	// ReconnectWait is the wait between reconnection attempts; 0 means 250 ms.
	// The client reconnects without end: a source gives up after its
	// RecoveryTimeout instead.
	ReconnectWait time.Duration
}

// TLSConfig holds the TLS files of a connection.
type TLSConfig struct {
	// CAFile is a PEM file of the certificate authorities to trust; empty
	// means the system pool.
	CAFile string
	// CertFile and KeyFile are the client certificate and key, for servers
	// that verify clients.
	CertFile, KeyFile string
	// InsecureSkipVerify skips verifying the server's certificate. For tests
	// only.
	InsecureSkipVerify bool
}

func (t TLSConfig) enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// Validate checks the settings without connecting.
func (c ConnConfig) Validate() error {
	if c.URL == "" {
		return fmt.Errorf("%w: no server URL", ErrConfig)
	}
	n := 0
	for _, set := range []bool{c.User != "" || c.Password != "", c.Token != "", c.CredsFile != "", c.NKeySeedFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w: connection to %s: set at most one of user/password, token, credentials file and nkey seed file", ErrConfig, c.URL)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: connection to %s: TLS needs both a client certificate file and a key file, or neither", ErrConfig, c.URL)
	}
	if c.ConnectTimeout < 0 || c.ReconnectWait < 0 {
		return fmt.Errorf("%w: connection to %s: negative timeout", ErrConfig, c.URL)
	}
	return nil
}

// Connect opens a connection as cfg says. Errors name the URL and wrap
// ErrConnect. The connection reconnects by itself after it is lost.
func Connect(ctx context.Context, cfg ConnConfig) (*nats.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.Timeout(cfg.ConnectTimeout),
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of being sent later out of order with acks.
		nats.ReconnectBufSize(-1),
	}
	if cfg.ReconnectWait == 0 {
		opts[1] = nats.ReconnectWait(250 * time.Millisecond)
	}
	if cfg.ConnectTimeout == 0 {
		opts[2] = nats.Timeout(5 * time.Second)
	}
	if cfg.Name != "" {
		opts = append(opts, nats.Name(cfg.Name))
	}
	switch {
	case cfg.User != "" || cfg.Password != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.CredsFile != "":
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("%w to %s: credentials file: %v", ErrConnect, cfg.URL, err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w to %s: nkey seed file %s: %v", ErrConnect, cfg.URL, cfg.NKeySeedFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.TLS.enabled() {
		tc, err := cfg.TLS.config()
		if err != nil {
			return nil, fmt.Errorf("%w to %s: %v", ErrConnect, cfg.URL, err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w to %s: %w", ErrConnect, cfg.URL, err)
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w to %s: %w", ErrConnect, cfg.URL, err)
	}
	return nc, nil
}

func (t TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // asked for explicitly, for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s / key %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
