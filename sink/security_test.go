package sink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// pki is a test CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in a temporary directory.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	p := pki{
		ca:         filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client-key.pem"),
	}
	caKey, caDER := newCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "nlbridge test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, nil)
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.ca, "CERTIFICATE", caDER)
	for _, c := range []struct {
		cert, key string
		tmpl      *x509.Certificate
	}{
		{p.serverCert, p.serverKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "127.0.0.1"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{p.clientCert, p.clientKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "nlbridge"},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	} {
		key, der := newCert(t, c.tmpl, caCert, caKey)
		writePEM(t, c.cert, "CERTIFICATE", der)
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, c.key, "PRIVATE KEY", keyDER)
	}
	return p
}

// newCert makes a P-256 key and a certificate from tmpl, signed by parent,
// or self-signed when parent is nil.
func newCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// runSecureServer runs a server on a random 127.0.0.1 port with the
// options that configure sets.
func runSecureServer(t *testing.T, configure func(*server.Options)) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	configure(&opts)
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

// serverTLS configures a server with the certificate of p; verify makes it
// require client certificates signed by p's CA.
func serverTLS(t *testing.T, p pki, verify bool) func(*server.Options) {
	return func(o *server.Options) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.ca, Verify: verify})
		if err != nil {
			t.Fatal(err)
		}
		o.TLS, o.TLSConfig, o.TLSVerify, o.TLSTimeout = true, tc, verify, 10
	}
}

// logBuffer captures a sink's logs, at every level.
func logBuffer() (*syncBuffer, *slog.Logger) {
	var b syncBuffer
	return &b, slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// connectSecure connects a sink to url with a and tl, logging to the
// returned buffer; Connect must return within 10 s (it tries each server
// once, for up to nats.go's 2 s timeout, plus slack for loaded machines).
func connectSecure(t *testing.T, url string, a Auth, tl TLS) (*NATS, *syncBuffer) {
	t.Helper()
	logs, log := logBuffer()
	start := time.Now()
	s, err := Connect(Config{Servers: []string{url}, Name: "test", Host: "h",
		Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}, Logger: log, Auth: a, TLS: tl})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(s.Conn().Close)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Connect took %v", took)
	}
	return s, logs
}

// waitConnected fails unless the sink connects within 10 s.
func waitConnected(t *testing.T, s *NATS, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Conn().IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected after 10s; log:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkPublishes fails unless a message that the sink publishes reaches a
// client connected to url with opts.
func checkPublishes(t *testing.T, s *NATS, url string, opts ...nats.Option) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.Timeout(10*time.Second))...)
	if err != nil {
		t.Fatalf("listener: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("netlink.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no message from the sink: %v", err)
	}
	if !strings.Contains(m.Subject, "eth0") {
		t.Errorf("got subject %s, want one for eth0", m.Subject)
	}
}

// waitLog fails unless a line of the log has all of want within 10 s.
func waitLog(t *testing.T, logs *syncBuffer, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for line := range strings.Lines(logs.String()) {
			if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(line, w) }) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in the log:\n%s", want, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitWarning waits up to 10 s for the warning that the sink cannot connect,
// checks that it is the only one, that it contains each of want
// (case-insensitive), and returns it.
func waitWarning(t *testing.T, logs *syncBuffer, want ...string) string {
	t.Helper()
	const prefix = `level=WARN msg="cannot connect to NATS`
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), prefix) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning in the log:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // retries follow within that time
	var warnings []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, prefix) {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", len(warnings), logs)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(warnings[0]), strings.ToLower(w)) {
			t.Errorf("the warning does not say %q: %s", w, warnings[0])
		}
	}
	return warnings[0]
}

// noSecret fails if secret is in the log.
func noSecret(t *testing.T, logs *syncBuffer, secret string) {
	t.Helper()
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the secret %q is in the log:\n%s", secret, logs)
	}
}

// nkeyUser makes a user nkey and writes its seed to a file.
func nkeyUser(t *testing.T) (pub, seed, file string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err = kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return pub, string(s), writeFile(t, "user.nk", s)
}

// operator is a trusted operator with one account, for servers in operator
// mode.
type operator struct {
	claims  *jwt.OperatorClaims
	account nkeys.KeyPair
	accJWT  string
}

func newOperator(t *testing.T) operator {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	apub, _ := akp.PublicKey()
	accJWT, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	return operator{claims: oc, account: akp, accJWT: accJWT}
}

// configure runs a server in operator mode that trusts o and knows its
// account.
func (o operator) configure(opts *server.Options) {
	apub, _ := o.account.PublicKey()
	r := &server.MemAccResolver{}
	if err := r.Store(apub, o.accJWT); err != nil {
		panic(err)
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{o.claims}
	opts.AccountResolver = r
}

// creds writes a .creds file for a new user of o's account and returns it
// and the user's seed.
func (o operator) creds(t *testing.T) (file, seed string) {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(o.account)
	if err != nil {
		t.Fatal(err)
	}
	data, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.creds", data), string(useed)
}

func TestAuthMethod(t *testing.T) {
	for _, tt := range []struct {
		auth Auth
		want string
	}{
		{Auth{}, "none"},
		{Auth{User: "u", Password: "p"}, "user/password"},
		{Auth{User: "u"}, "user/password"},
		{Auth{Token: "t"}, "token"},
		{Auth{CredentialsFile: "/c"}, "credentials"},
		{Auth{NKeySeedFile: "/n"}, "nkey"},
	} {
		if got := tt.auth.Method(); got != tt.want {
			t.Errorf("%+v.Method() = %q, want %q", tt.auth, got, tt.want)
		}
	}
}

func TestTLSEnabled(t *testing.T) {
	for _, tt := range []struct {
		tls  TLS
		want bool
	}{
		{TLS{}, false},
		{TLS{CAFile: "/ca"}, true},
		{TLS{CertFile: "/c", KeyFile: "/k"}, true},
		{TLS{InsecureSkipVerify: true}, true},
		{TLS{HandshakeFirst: true}, true},
	} {
		if got := tt.tls.Enabled(); got != tt.want {
			t.Errorf("%+v.Enabled() = %v, want %v", tt.tls, got, tt.want)
		}
	}
}

// Each authentication method against a server that requires it: the right
// secret connects and publishes; a wrong one makes Connect return, warns
// once, naming the method and the server's refusal, and keeps retrying.
// No secret is ever logged.
func TestConnectAuth(t *testing.T) {
	pub, seed, seedFile := nkeyUser(t)
	_, wrongSeed, wrongSeedFile := nkeyUser(t)
	op := newOperator(t)
	credsFile, credsSeed := op.creds(t)
	wrongCredsFile, wrongCredsSeed := newOperator(t).creds(t) // a user of an account the server does not know
	for _, tt := range []struct {
		name      string
		server    func(*server.Options)
		listener  nats.Option // for a separate client
		right     Auth
		wrong     Auth
		secrets   []string // never to be logged
		method    string
		wrongWant string // in the warning, besides the method
	}{
		{
			name:     "user/password",
			server:   func(o *server.Options) { o.Username, o.Password = "nlbridge", "pa55-right" },
			listener: nats.UserInfo("nlbridge", "pa55-right"),
			right:    Auth{User: "nlbridge", Password: "pa55-right"},
			wrong:    Auth{User: "nlbridge", Password: "pa55-wrong"},
			secrets:  []string{"pa55-right", "pa55-wrong"},
			method:   "auth=user/password",
		},
		{
			name:     "token",
			server:   func(o *server.Options) { o.Authorization = "t0ken-right" },
			listener: nats.Token("t0ken-right"),
			right:    Auth{Token: "t0ken-right"},
			wrong:    Auth{Token: "t0ken-wrong"},
			secrets:  []string{"t0ken-right", "t0ken-wrong"},
			method:   "auth=token",
		},
		{
			name:     "nkey",
			server:   func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} },
			listener: func() nats.Option { o, _ := nats.NkeyOptionFromSeed(seedFile); return o }(),
			right:    Auth{NKeySeedFile: seedFile},
			wrong:    Auth{NKeySeedFile: wrongSeedFile},
			secrets:  []string{seed, wrongSeed},
			method:   "auth=nkey",
		},
		{
			name:     "credentials",
			server:   op.configure,
			listener: nats.UserCredentials(credsFile),
			right:    Auth{CredentialsFile: credsFile},
			wrong:    Auth{CredentialsFile: wrongCredsFile},
			secrets:  []string{credsSeed, wrongCredsSeed},
			method:   "auth=credentials",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := runSecureServer(t, tt.server)
			t.Run("right", func(t *testing.T) {
				s, logs := connectSecure(t, srv.ClientURL(), tt.right, TLS{})
				waitConnected(t, s, logs)
				checkPublishes(t, s, srv.ClientURL(), tt.listener)
				for _, secret := range tt.secrets {
					noSecret(t, logs, secret)
				}
			})
			t.Run("wrong", func(t *testing.T) {
				s, logs := connectSecure(t, srv.ClientURL(), tt.wrong, TLS{})
				waitWarning(t, logs, tt.method, "tls=false", "authorization violation")
				if st := s.Conn().Status(); st != nats.RECONNECTING {
					t.Errorf("status %v, want RECONNECTING: the sink must keep trying", st)
				}
				for _, secret := range tt.secrets {
					noSecret(t, logs, secret)
				}
			})
		})
	}
}

// A wrong password keeps being retried, and the sink connects once the
// server accepts it.
func TestConnectAuthFixedOnServer(t *testing.T) {
	var opts server.Options
	srv := runSecureServer(t, func(o *server.Options) { o.Username, o.Password = "nlbridge", "old"; opts = *o })
	s, logs := connectSecure(t, srv.ClientURL(), Auth{User: "nlbridge", Password: "new"}, TLS{})
	waitWarning(t, logs, "auth=user/password", "authorization violation")
	opts.Port, opts.Password = srv.Addr().(*net.TCPAddr).Port, "new"
	if err := srv.ReloadOptions(&opts); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.Conn().IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected 10s after the password was fixed; log:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server that starts refusing the credentials of a connected sink (a
// password changed on the server) gets the same single warning as at
// start, not an error at each retry, and the sink keeps trying.
func TestConnectAuthRefusedLater(t *testing.T) {
	var opts server.Options
	srv := runSecureServer(t, func(o *server.Options) { o.Username, o.Password = "nlbridge", "pa55-old"; opts = *o })
	s, logs := connectSecure(t, srv.ClientURL(), Auth{User: "nlbridge", Password: "pa55-old"}, TLS{})
	waitConnected(t, s, logs)
	opts.Port, opts.Password = srv.Addr().(*net.TCPAddr).Port, "pa55-new"
	if err := srv.ReloadOptions(&opts); err != nil {
		t.Fatal(err)
	}
	waitWarning(t, logs, "auth=user/password", "authorization violation")
	time.Sleep(2 * time.Second) // several retries
	if n := strings.Count(logs.String(), `msg="cannot connect to NATS`); n < 3 {
		t.Errorf("%d failed attempts logged, want retries:\n%s", n, logs)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"cannot connect"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors in the log:\n%s", logs)
	}
	if st := s.Conn().Status(); st != nats.RECONNECTING {
		t.Errorf("status %v, want RECONNECTING", st)
	}
	noSecret(t, logs, "pa55-old")
	noSecret(t, logs, "pa55-new")
}

// User information in server URLs is never logged.
func TestConnectRedactsURL(t *testing.T) {
	srv := runSecureServer(t, func(o *server.Options) { o.Username, o.Password = "nlbridge", "s3cret-right" })
	port := srv.Addr().(*net.TCPAddr).Port
	s, logs := connectSecure(t, fmt.Sprintf("nats://nlbridge:s3cret-right@127.0.0.1:%d", port), Auth{}, TLS{})
	waitConnected(t, s, logs)
	waitLog(t, logs, "server=nats://REDACTED@127.0.0.1")
	noSecret(t, logs, "s3cret-right")
	for _, url := range []string{
		fmt.Sprintf("nats://nlbridge:s3cret-in-url@127.0.0.1:%d", port),
		fmt.Sprintf("nats://s3cret-in-url@127.0.0.1:%d", port), // a token
	} {
		_, logs := connectSecure(t, url, Auth{}, TLS{})
		waitWarning(t, logs, "authorization violation")
		if !strings.Contains(logs.String(), "servers=") {
			t.Errorf("the servers are not logged:\n%s", logs)
		}
		noSecret(t, logs, "s3cret-in-url")
	}
	_, err := Connect(Config{Servers: []string{"nats://u:s3cret-in-url@[::1"}, Encoder: encode.JSON{}, Logger: discard()})
	if err == nil || strings.Contains(err.Error(), "s3cret-in-url") {
		t.Errorf("Connect with a malformed URL: got error %v, want one without the password", err)
	}
}

// TLS settings against servers with TLS.
func TestConnectTLS(t *testing.T) {
	p := newPKI(t)
	for _, tt := range []struct {
		name   string
		verify bool // the server requires client certificates
		first  bool // the server wants the TLS handshake first
		tls    TLS
		want   string // in the warning; "" when the sink connects
	}{
		{name: "ca", tls: TLS{CAFile: p.ca}},
		{name: "system roots", want: "certificate"},
		{name: "insecure skip verify", tls: TLS{InsecureSkipVerify: true}},
		{name: "client cert", verify: true, tls: TLS{CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}},
		{name: "no client cert", verify: true, tls: TLS{CAFile: p.ca}, want: "tls"},
		{name: "handshake first", first: true, tls: TLS{CAFile: p.ca, HandshakeFirst: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := runSecureServer(t, func(o *server.Options) {
				serverTLS(t, p, tt.verify)(o)
				o.TLSHandshakeFirst = tt.first
			})
			s, logs := connectSecure(t, srv.ClientURL(), Auth{}, tt.tls)
			if tt.want != "" {
				waitWarning(t, logs, tt.want, fmt.Sprintf("tls=%v", tt.tls.Enabled()))
				return
			}
			waitConnected(t, s, logs)
			listener := []nats.Option{nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey)}
			if tt.first {
				listener = append(listener, nats.TLSHandshakeFirst())
			}
			checkPublishes(t, s, srv.ClientURL(), listener...)
			waitLog(t, logs, `msg="connected to NATS" server=tls://127.0.0.1`, "auth=none tls=true")
		})
	}
}

// Files that cannot be read or are malformed fail Connect at once, with an
// error that names the setting and the file and holds no secret.
func TestConnectBadFiles(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	const secret = "SUAGARBAGESEEDTHATISNOTVALIDATALLBUTLOOKSSECRET"
	garbage := writeFile(t, "garbage", []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"+secret+"\n"))
	_, _, seedFile := nkeyUser(t)
	accKP, _ := nkeys.CreateAccount()
	accSeed, _ := accKP.Seed()
	accSeedFile := writeFile(t, "account.nk", accSeed)
	op := newOperator(t)
	credsFile, _ := op.creds(t)
	creds, _ := os.ReadFile(credsFile)
	jwtOnly := writeFile(t, "jwt-only.creds", creds[:strings.Index(string(creds), "************************* IMPORTANT")])
	otherCreds, _ := op.creds(t)
	otherData, _ := os.ReadFile(otherCreds)
	// the JWT of one user with the seed of another
	i, j := strings.Index(string(creds), "-----BEGIN USER NKEY SEED"), strings.Index(string(otherData), "-----BEGIN USER NKEY SEED")
	mismatched := writeFile(t, "mismatched.creds", append(creds[:i:i], otherData[j:]...))

	for _, tt := range []struct {
		name string
		auth Auth
		tls  TLS
		want string
	}{
		{"missing CA", Auth{}, TLS{CAFile: missing}, "sink: nats.tls.ca_file " + missing + ": no such file"},
		{"garbage CA", Auth{}, TLS{CAFile: garbage}, "sink: nats.tls.ca_file " + garbage + ": no certificates found"},
		{"missing cert", Auth{}, TLS{CertFile: missing, KeyFile: p.clientKey}, "sink: nats.tls.cert_file " + missing + ": no such file"},
		{"missing key", Auth{}, TLS{CertFile: p.clientCert, KeyFile: missing}, "sink: nats.tls.key_file " + missing + ": no such file"},
		{"mismatched key", Auth{}, TLS{CertFile: p.clientCert, KeyFile: p.serverKey}, "nats.tls.cert_file " + p.clientCert + " and nats.tls.key_file " + p.serverKey + ": tls: private key does not match"},
		{"garbage cert", Auth{}, TLS{CertFile: garbage, KeyFile: p.clientKey}, "nats.tls.cert_file " + garbage},
		{"missing seed", Auth{NKeySeedFile: missing}, TLS{}, "sink: nats.auth.nkey_seed_file " + missing + ": no such file"},
		{"unreadable seed", Auth{NKeySeedFile: dir}, TLS{}, "sink: nats.auth.nkey_seed_file " + dir + ": is a directory"},
		{"garbage seed", Auth{NKeySeedFile: garbage}, TLS{}, "sink: nats.auth.nkey_seed_file " + garbage + ": no valid user nkey seed"},
		{"account seed", Auth{NKeySeedFile: accSeedFile}, TLS{}, "sink: nats.auth.nkey_seed_file " + accSeedFile + ": no valid user nkey seed"},
		{"missing creds", Auth{CredentialsFile: missing}, TLS{}, "sink: nats.auth.credentials_file " + missing + ": no such file"},
		{"garbage creds", Auth{CredentialsFile: garbage}, TLS{}, "sink: nats.auth.credentials_file " + garbage + ": no valid user JWT"},
		{"seed as creds", Auth{CredentialsFile: seedFile}, TLS{}, "sink: nats.auth.credentials_file " + seedFile + ": no valid user JWT"},
		{"creds without seed", Auth{CredentialsFile: jwtOnly}, TLS{}, "sink: nats.auth.credentials_file " + jwtOnly + ": no valid user nkey seed"},
		{"creds with another's seed", Auth{CredentialsFile: mismatched}, TLS{}, "sink: nats.auth.credentials_file " + mismatched + ": the seed is not that of the JWT's user"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			// Port 1 on 127.0.0.1: nothing listens, and nothing is tried.
			s, err := Connect(Config{Servers: []string{"nats://127.0.0.1:1"}, Name: "test", Host: "h",
				Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}, Logger: discard(), Auth: tt.auth, TLS: tt.tls})
			if err == nil {
				s.Conn().Close()
				t.Fatalf("Connect succeeded, want an error with %q", tt.want)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("Connect took %v", took)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want one with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), string(accSeed)) {
				t.Errorf("the error shows a seed: %v", err)
			}
		})
	}
}
