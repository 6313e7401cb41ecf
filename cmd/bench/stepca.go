package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// The step-ca peer of the CA row: smallstep's step-ca (make bench builds it
// into .tools/ from the Go module proxy), set up as `step ca init` sets it up
// — a root, an intermediate that signs, its default durable database
// (badgerv2, whose writes are synced: badger's SyncWrites defaults to true),
// TLS on a loopback port — with one JWK provisioner whose one-time tokens
// (JWTs signed ES256 with the provisioner's key) the bench makes itself, as
// `step ca token` would, before each measurement window. No `step` CLI: every
// file is written here.
//
// step-ca keeps each token's jti in its database and refuses one used again
// ("token already used"), as pkiboard's CA refuses a spent token.

// stepCAProvisioner is the name of the JWK provisioner (the tokens' issuer).
const stepCAProvisioner = "bench"

// stepCA is a running step-ca.
type stepCA struct {
	dir     string
	cmd     *exec.Cmd
	done    chan struct{} // closed when it has exited
	addr    string        // 127.0.0.1:port
	version string        // "step-ca v0.30.2"
	roots   *x509.CertPool
	rootFP  string // hex SHA-256 of the root certificate (the token's "sha" claim)
	key     *ecdsa.PrivateKey
	kid     string // the provisioner key's RFC 7638 thumbprint
}

// startStepCA writes a step-ca installation into a temporary directory and
// starts bin on it; it returns once step-ca answers /health.
func startStepCA(bin string) *stepCA {
	dir, err := os.MkdirTemp("", "pkibench-stepca")
	if err != nil {
		fatalf("%v", err)
	}
	s := &stepCA{dir: dir, done: make(chan struct{})}
	// `step-ca version` of a `go install` build says "0000000-dev"; the
	// module version is in the binary's build information.
	s.version = "step-ca (version unknown)"
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		s.version = "step-ca " + bi.Main.Version
	}

	// The root and the intermediate, ECDSA P-256 as `step ca init` makes
	// them (and as pkiboard's root is).
	now := time.Now()
	rootKey := newP256()
	root := selfSign(&x509.Certificate{
		SerialNumber: randSerial(), Subject: pkix.Name{CommonName: "bench step-ca Root CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey, rootKey)
	interKey := newP256()
	inter := selfSign(&x509.Certificate{
		SerialNumber: randSerial(), Subject: pkix.Name{CommonName: "bench step-ca Intermediate CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root, interKey, rootKey)
	s.roots = x509.NewCertPool()
	s.roots.AddCert(root)
	fp := sha256.Sum256(root.Raw)
	s.rootFP = hex.EncodeToString(fp[:])

	interDER, err := x509.MarshalECPrivateKey(interKey)
	if err != nil {
		fatalf("%v", err)
	}
	writePEM(s.path("root_ca.crt"), "CERTIFICATE", root.Raw)
	writePEM(s.path("intermediate_ca.crt"), "CERTIFICATE", inter.Raw)
	writePEM(s.path("intermediate_ca_key"), "EC PRIVATE KEY", interDER)

	// The provisioner's key: ca.json holds only its public half, as a JWK.
	s.key = newP256()
	jwk, kid := publicJWK(&s.key.PublicKey)
	s.kid = kid
	s.addr = freeLoopbackAddr()
	cfg := map[string]any{
		"root":     s.path("root_ca.crt"),
		"crt":      s.path("intermediate_ca.crt"),
		"key":      s.path("intermediate_ca_key"),
		"address":  s.addr,
		"dnsNames": []string{"127.0.0.1"},
		"logger":   map[string]string{"format": "text"},
		"db":       map[string]string{"type": "badgerv2", "dataSource": s.path("db")},
		"authority": map[string]any{
			"provisioners": []any{map[string]any{"type": "JWK", "name": stepCAProvisioner, "key": jwk}},
		},
		"tls": map[string]any{
			"cipherSuites":  []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
			"minVersion":    1.2,
			"maxVersion":    1.3,
			"renegotiation": false,
		},
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(s.path("ca.json"), data, 0o600); err != nil {
		fatalf("%v", err)
	}

	// Its log (a line per request, as pkiboard's CA logs one) goes to a
	// file, read back if it fails to start.
	logFile, err := os.Create(s.path("step-ca.log"))
	if err != nil {
		fatalf("%v", err)
	}
	s.cmd = exec.Command(bin, s.path("ca.json"))
	s.cmd.Env = append(os.Environ(), "STEPPATH="+dir, "HOME="+dir)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if *profileFlag != "" {
		logf("ca: step-ca has no CPU profile switch; only pkiboard's CA is profiled")
	}
	if err := s.cmd.Start(); err != nil {
		fatalf("start step-ca: %v", err)
	}
	go func() { s.cmd.Wait(); logFile.Close(); close(s.done) }()
	if err := s.waitHealthy(30 * time.Second); err != nil {
		s.stop()
		tail, _ := os.ReadFile(s.path("step-ca.log"))
		fatalf("step-ca: %v\n%s", err, tail)
	}
	return s
}

func (s *stepCA) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// waitHealthy polls /health until step-ca answers it, exits, or timeout.
func (s *stepCA) waitHealthy(timeout time.Duration) error {
	c := s.httpClient()
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("exited before it answered")
		default:
		}
		resp, err := c.Get("https://" + s.addr + "/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s within %v", s.addr, timeout)
}

// stop ends step-ca with SIGTERM (SIGKILL after 20 s) and removes its
// directory.
func (s *stepCA) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	os.RemoveAll(s.dir)
}

// httpClient is one client's HTTPS connection to step-ca, kept alive across
// requests; it trusts only step-ca's root.
func (s *stepCA) httpClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: s.roots, ServerName: "127.0.0.1"},
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// token makes a one-time token for sid, as `step ca token SID` does: a JWT
// signed ES256 with the provisioner's key, its jti random.
func (s *stepCA) token(sid string) (string, error) {
	now := time.Now()
	jti := make([]byte, 32)
	rand.Read(jti)
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": s.kid, "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss":  stepCAProvisioner,
		"aud":  "https://" + s.addr + "/1.0/sign",
		"sub":  sid,
		"sans": []string{sid},
		"jti":  hex.EncodeToString(jti),
		"iat":  now.Unix(),
		"nbf":  now.Unix(),
		"exp":  now.Add(10 * time.Minute).Unix(),
		"sha":  s.rootFP,
	})
	b64 := base64.RawURLEncoding
	signed := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signed))
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64) // JWS: r and s, 32 bytes each (RFC 7518 §3.4)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return signed + "." + b64.EncodeToString(sig), nil
}

// ticket makes t's token, for step-ca.
func (s *stepCA) ticket(t *ticket) error {
	var err error
	t.ott, err = s.token(t.sid)
	return err
}

// stepSignRequest is the body of step-ca's POST /1.0/sign.
type stepSignRequest struct {
	CSR string `json:"csr"`
	OTT string `json:"ott"`
}

// stepEnrollLoad is tokenEnrollLoad against step-ca: each client, on one
// HTTPS connection kept alive, posts a ticket's CSR and token again and again
// for one window, and checks each answer as enrollOnce does. It returns
// certificates issued per second and the most tickets one client spent.
func stepEnrollLoad(ca *stepCA, s *tokenClients) (rate float64, mostSpent int) {
	spent := make([]int, len(s.keys))
	url := "https://" + ca.addr + "/1.0/sign"
	rate = throughput(len(s.keys), func(i int) (func() error, func()) {
		c := ca.httpClient()
		spki := publicKeyInfo(s.keys[i])
		return func() error {
			t, err := s.take(i)
			if err != nil {
				return err
			}
			csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: t.csr}))
			body, _ := json.Marshal(stepSignRequest{CSR: csrPEM, OTT: t.ott})
			resp, err := c.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("step-ca sign %s: %w", t.sid, err)
			}
			data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("step-ca sign %s: %w", t.sid, err)
			}
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("step-ca sign %s: %s: %s", t.sid, resp.Status, bytes.TrimSpace(data))
			}
			var ans struct {
				Crt string `json:"crt"`
			}
			if err := json.Unmarshal(data, &ans); err != nil {
				return fmt.Errorf("step-ca sign %s: %w", t.sid, err)
			}
			block, _ := pem.Decode([]byte(ans.Crt))
			if block == nil {
				return fmt.Errorf("step-ca sign %s: the answer holds no PEM certificate", t.sid)
			}
			if err := checkIssued(block.Bytes, spki); err != nil {
				return fmt.Errorf("step-ca sign %s: %w", t.sid, err)
			}
			spent[i]++
			return nil
		}, func() { c.CloseIdleConnections() }
	})
	for _, n := range spent {
		mostSpent = max(mostSpent, n)
	}
	return rate, mostSpent
}

// checkIssued is the check both CA rows' clients make of an answer: the
// certificate parses and certifies the client's key, whose DER
// SubjectPublicKeyInfo is spki.
func checkIssued(der []byte, spki []byte) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("the issued certificate does not parse: %w", err)
	}
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, spki) {
		return errors.New("the issued certificate is not for the CSR's key")
	}
	return nil
}

func newP256() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fatalf("%v", err)
	}
	return k
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		fatalf("%v", err)
	}
	return n.Add(n, big.NewInt(1))
}

// selfSign signs tmpl for key's public half with signer under parent (tmpl
// itself when parent is nil).
func selfSign(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) *x509.Certificate {
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		fatalf("%v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		fatalf("%v", err)
	}
	return cert
}

func writePEM(path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		fatalf("%v", err)
	}
}

// publicJWK returns pub as a JWK (RFC 7517) with its kid, the RFC 7638
// thumbprint: base64url of the SHA-256 of the required members in
// lexicographic order.
func publicJWK(pub *ecdsa.PublicKey) (map[string]string, string) {
	raw, err := pub.Bytes() // uncompressed point: 0x04 || X || Y
	if err != nil {
		fatalf("%v", err)
	}
	b64 := base64.RawURLEncoding
	x, y := b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:])
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	kid := b64.EncodeToString(sum[:])
	return map[string]string{"kty": "EC", "crv": "P-256", "x": x, "y": y, "use": "sig", "alg": "ES256", "kid": kid}, kid
}

// freeLoopbackAddr returns a loopback address with a port free now: step-ca
// needs its port in its config, and the tokens' audience names it.
func freeLoopbackAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
