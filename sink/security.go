package sink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/nlbridge/nlbridge/config"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Auth is the authentication nlbridge configures (nats.auth): at most
// one method, as config.Config.Validate checks.
type Auth = config.Auth

// TLS is the TLS nlbridge configures (nats.tls). With none of it set the
// sink still speaks TLS to servers that require it or to tls:// URLs,
// verifying them against the system's roots.
type TLS = config.TLS

// securityOptions reads and checks the files that a and t name and returns
// the nats.go options that apply them. nats.go would read some files only
// when connecting and, since the sink retries forever, fail there again and
// again; here a bad file is an error that names its setting. a and t are
// valid, as config.Config.Validate checks them (one method at most, user
// with password, certificate with key): the settings' shape is checked
// there only, and their files here only.
func securityOptions(a Auth, t TLS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	case a.CredentialsFile != "":
		if err := checkCredentials(a.CredentialsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(a.CredentialsFile))
	case a.NKeySeedFile != "":
		const setting = "nats.auth.nkey_seed_file"
		if err := checkSeed(setting, a.NKeySeedFile, nil); err != nil {
			return nil, err
		}
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fileError(setting, a.NKeySeedFile, err)
		}
		opts = append(opts, o)
	}

	if t.InsecureSkipVerify {
		// First: nats.Secure replaces the tls.Config that RootCAs and
		// ClientCert would otherwise create.
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}))
	}
	if t.CAFile != "" {
		const setting = "nats.tls.ca_file"
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fileError(setting, t.CAFile, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fileError(setting, t.CAFile, errors.New("no certificates found"))
		}
		opts = append(opts, nats.RootCAs(t.CAFile))
	}
	if t.CertFile != "" {
		if err := checkKeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.ClientCert(t.CertFile, t.KeyFile))
	}
	if t.HandshakeFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	return opts, nil
}

// ClientOptions returns the nats.go options that authenticate and secure a
// client's connection as a and t (nats.auth and nats.tls) configure
// nlbridge's own, after checking the files they name, so that the client
// commands reach the servers the bridges use.
func ClientOptions(a Auth, t TLS) ([]nats.Option, error) { return securityOptions(a, t) }

// checkKeyPair checks that a client certificate and its key load and match.
func checkKeyPair(certFile, keyFile string) error {
	if _, err := os.ReadFile(certFile); err != nil {
		return fileError("nats.tls.cert_file", certFile, err)
	}
	if _, err := os.ReadFile(keyFile); err != nil {
		return fileError("nats.tls.key_file", keyFile, err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("sink: nats.tls.cert_file %s and nats.tls.key_file %s: %w", certFile, keyFile, err)
	}
	return nil
}

// checkCredentials checks that a .creds file holds a user JWT and the seed
// of that user.
func checkCredentials(file string) error {
	const setting = "nats.auth.credentials_file"
	data, err := os.ReadFile(file)
	if err != nil {
		return fileError(setting, file, err)
	}
	defer clear(data)
	token, err := nkeys.ParseDecoratedJWT(data)
	if err != nil {
		return fileError(setting, file, fmt.Errorf("no user JWT: %w", err))
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return fileError(setting, file, fmt.Errorf("no valid user JWT: %w", err))
	}
	return checkSeed(setting, file, claims)
}

// checkSeed checks that file holds a user nkey seed, and, with claims, the
// seed of the user that claims are about. The seed never goes into an
// error.
func checkSeed(setting, file string, claims *jwt.UserClaims) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fileError(setting, file, err)
	}
	defer clear(data)
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err != nil {
		return fileError(setting, file, fmt.Errorf("no valid user nkey seed: %w", err))
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return fileError(setting, file, fmt.Errorf("no valid user nkey seed: %w", err))
	}
	if claims != nil && pub != claims.Subject {
		return fileError(setting, file, fmt.Errorf("the seed is not that of the JWT's user %s", claims.Subject))
	}
	return nil
}

// fileError names the setting and the file in err, dropping the file name
// that an *fs.PathError repeats.
func fileError(setting, file string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	return fmt.Errorf("sink: %s %s: %w", setting, file, err)
}

// isAuthError reports whether err is a server's refusal of the
// credentials.
func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}
