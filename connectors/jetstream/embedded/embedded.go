package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrStart is wrapped by the errors of Start and Restart.
var ErrStart = errors.New("embedded: nats server did not start")

// reservedPort is the default NATS port. A random port is never it, so an
// embedded server never takes the place of a NATS server installed on the
// machine.
const reservedPort = 4222

// Config describes an embedded server. Only Dir is required.
type Config struct {
	// Dir is the JetStream store directory. Streams written there survive a
	// Shutdown and are found again by a server started on the same Dir.
	Dir string
	// Host is the interface to listen on; empty means 127.0.0.1.
	Host string
	// Port is the client port; 0 means a free port chosen at random (never
	// 4222). Restart keeps the port the server first got.
	Port int
	// User and Password, or Token, require clients to authenticate. Empty
	// means no authentication.
	User, Password string
	Token          string
	// Name is the server's name; empty means "sluice-embedded".
	Name string
	// MaxMemory and MaxStore limit JetStream's memory and file storage in
	// bytes; 0 means the server's defaults (a share of the machine's).
	MaxMemory, MaxStore int64
	// ReadyTimeout bounds the wait for the server to accept connections; 0
	// means 10 s.
	ReadyTimeout time.Duration
	// Logger, if set, receives the server's log (notices, warnings, errors).
	// nil keeps the server quiet.
	Logger server.Logger
}

// Server is a running embedded nats-server with JetStream. Its methods are
// safe for concurrent use.
type Server struct {
	mu   sync.Mutex
	cfg  Config // Port is the actual port once started
	srv  *server.Server
	url  string
	down bool
}

// Start starts a server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Config.Dir (the JetStream store directory) is empty", ErrStart)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d is out of range", ErrStart, cfg.Port)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Name == "" {
		cfg.Name = "sluice-embedded"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	s := &Server{cfg: cfg}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// start runs with s.mu held or before s is shared.
func (s *Server) start() error {
	port := s.cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:         s.cfg.Name,
		Host:               s.cfg.Host,
		Port:               port,
		NoSigs:             true,
		NoLog:              s.cfg.Logger == nil,
		JetStream:          true,
		StoreDir:           s.cfg.Dir,
		JetStreamMaxMemory: s.cfg.MaxMemory,
		JetStreamMaxStore:  s.cfg.MaxStore,
		Username:           s.cfg.User,
		Password:           s.cfg.Password,
		Authorization:      s.cfg.Token,
		// No HTTP monitoring, cluster or leaf ports: nothing else to collide.
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("%w: on %s:%d with store %s: %v", ErrStart, s.cfg.Host, port, s.cfg.Dir, err)
	}
	if s.cfg.Logger != nil {
		srv.SetLogger(s.cfg.Logger, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(s.cfg.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("%w: on %s:%d with store %s: not ready for connections after %v (port in use?)", ErrStart, s.cfg.Host, port, s.cfg.Dir, s.cfg.ReadyTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("%w: on %s:%d: JetStream is not enabled (store %s)", ErrStart, s.cfg.Host, port, s.cfg.Dir)
	}
	if port == server.RANDOM_PORT {
		addr, ok := srv.Addr().(*net.TCPAddr)
		if !ok || addr.Port == reservedPort {
			// The kernel's ephemeral range does not hold 4222 on common
			// systems; if it ever does, try another port.
			srv.Shutdown()
			srv.WaitForShutdown()
			return s.start()
		}
		port = addr.Port
	}
	s.cfg.Port = port
	s.srv = srv
	s.url = "nats://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(port))
	s.down = false
	return nil
}

// URL is the client URL, for example nats://127.0.0.1:41234. It stays the
// same across Restart.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Port is the client port.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Port
}

// Dir is the JetStream store directory.
func (s *Server) Dir() string { return s.cfg.Dir }

// Shutdown stops the server and waits until it has stopped: clients are
// disconnected and the store is flushed and closed. It is safe to call more
// than once.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown()
}

func (s *Server) shutdown() {
	if s.down || s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.down = true
}

// Restart stops the server if it runs and starts it again on the same store
// directory, host and port, so clients reconnect to the same URL and find the
// same streams.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown()
	// The port may take a moment to be released by the old listener.
	var err error
	for attempt := range 20 {
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
	}
	return err
}

// Running reports whether the server is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil && !s.down && s.srv.Running()
}
