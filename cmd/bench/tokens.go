package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"pkiboard/ca"
	"pkiboard/wire"
)

// ticket is one enrollment of a token row, made before a measurement window:
// a student ID of its own, a CSR for it (the client's key, CN=sid), and the
// one-time token that authorizes it — for pkiboard's CA the key derived from
// the token (ca.TokenKey), as a client keeps it; for step-ca the token.
//
// Each ticket has its own SID because a student holds one live token at a
// time (a new one cancels her older ones): as in a course, each enrollment
// is another student's.
type ticket struct {
	sid string
	csr []byte
	key ed25519.PrivateKey // pkiboard
	ott string             // step-ca
}

// tokenClients are the clients of the token rows: client i enrolls with
// keys[i], and queues[i] holds its tickets, spent in order.
type tokenClients struct {
	keys   []*ecdsa.PrivateKey
	queues [][]ticket
	next   []int // the number in the next SID of client i
	// mint makes the token of a ticket for its sid.
	mint func(t *ticket) error
}

func newTokenClients(keys []*ecdsa.PrivateKey, mint func(t *ticket) error) *tokenClients {
	return &tokenClients{keys: keys, queues: make([][]ticket, len(keys)), next: make([]int, len(keys)), mint: mint}
}

// fill makes tickets until every client holds need of them, one goroutine per
// client, and returns how many it made and how long that took.
func (s *tokenClients) fill(need int) (made int, took time.Duration) {
	start := time.Now()
	var n atomic.Int64
	var wg sync.WaitGroup
	for i := range s.keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(s.queues[i]) < need {
				t := ticket{sid: fmt.Sprintf("bench-%02d-%d", i, s.next[i])}
				s.next[i]++
				var err error
				t.csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: t.sid}}, s.keys[i])
				if err == nil {
					err = s.mint(&t)
				}
				if err != nil {
					fatalf("make a token for %s: %v", t.sid, err)
				}
				s.queues[i] = append(s.queues[i], t)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(n.Load()), time.Since(start)
}

// take returns client i's next ticket, or an error when it has spent them all.
func (s *tokenClients) take(i int) (ticket, error) {
	if len(s.queues[i]) == 0 {
		return ticket{}, fmt.Errorf("client %d spent all its tokens within the window: raise the margin of tokenNeed", i)
	}
	t := s.queues[i][0]
	s.queues[i] = s.queues[i][1:]
	return t, nil
}

// pkiboardTokens makes the tickets of pkiboard's CA: each token through the
// CA's operator socket, with the request `pkiboard token --sid` sends; the
// client keeps only the key derived from it.
func pkiboardTokens(socket string) func(t *ticket) error {
	return func(t *ticket) error {
		token, err := makeToken(socket, t.sid)
		if err != nil {
			return err
		}
		t.key, err = ca.TokenKey(token)
		return err
	}
}

// makeToken asks the CA listening on the operator socket for a token for
// sid: the operator command "token", one request per connection.
func makeToken(socket, sid string) (string, error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return "", err
	}
	defer c.Close()
	wc := wire.NewConn(c, wire.Options{MaxFrame: wire.MaxAdminFrame, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	args, _ := json.Marshal(map[string]string{"sid": sid})
	if err := wc.WriteMessage(&wire.AdminRequest{Command: "token", Args: args}); err != nil {
		return "", err
	}
	resp, err := wire.Expect[*wire.AdminResponse](wc.ReadMessage())
	if err != nil {
		return "", err
	}
	var v struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(resp.Result, &v); err != nil {
		return "", err
	}
	return v.Token, nil
}

// tokenEnrollLoad is enrollLoad under policy "token": each of the clients
// enrolls again and again for one window, each request a ticket of its own,
// authorized by its token — the token key's Ed25519 signature over the
// request's binding, made in the window, as a client makes it — and checks
// each answer (checkIssued). It returns certificates issued per second and
// the most tickets one client spent.
func tokenEnrollLoad(addr string, fp [32]byte, s *tokenClients) (rate float64, mostSpent int) {
	spent := make([]int, len(s.keys))
	rate = throughput(len(s.keys), func(i int) (func() error, func()) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fatalf("dial CA: %v", err)
		}
		wc := wire.NewConn(c, wire.Options{})
		spki := publicKeyInfo(s.keys[i])
		return func() error {
			t, err := s.take(i)
			if err != nil {
				return err
			}
			binding := wire.EnrollBinding(wire.AuthToken, wire.ProfileStudent, t.sid, fp, t.csr)
			req := &wire.EnrollRequest{
				Version: wire.ProtocolVersion, Profile: wire.ProfileStudent, SID: t.sid, CSR: t.csr, Root: fp,
				Auth: wire.AuthToken, TokenKey: t.key.Public().(ed25519.PublicKey), Signature: ed25519.Sign(t.key, binding),
			}
			if err := enrollOnce(wc, req, spki); err != nil {
				return fmt.Errorf("enroll %s with a token: %w", t.sid, err)
			}
			spent[i]++
			return nil
		}, func() { c.Close() }
	})
	for _, n := range spent {
		mostSpent = max(mostSpent, n)
	}
	return rate, mostSpent
}

// tokenNeed is how many tokens each client holds before a window: twice
// what it would spend at rate (the open row's, just measured), and half as
// many again as any client spent in an earlier window.
func tokenNeed(rate float64, clients, mostSpent int) int {
	perClient := rate * windowFlag.Seconds() / float64(clients)
	return max(int(math.Ceil(2*perClient)), int(math.Ceil(1.5*float64(mostSpent)))) + 64
}

// publicKeyInfo returns the DER SubjectPublicKeyInfo of key's public half.
func publicKeyInfo(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		fatalf("%v", err)
	}
	return der
}
