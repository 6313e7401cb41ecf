package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"pkiboard/ca"
	"pkiboard/wire"
)

// tokenSupply holds the one-time tokens of the token row's clients: client i
// enrolls sids[i] and spends keys[i], one token key per enrollment. Tokens
// are made through the CA's operator socket, with the request `pkiboard token
// --sid` sends, before a measurement window and never inside one; the client
// keeps only the key derived from each (ca.TokenKey), as a real one would.
type tokenSupply struct {
	socket string // the CA's operator socket
	sids   []string
	keys   [][]ed25519.PrivateKey
}

func newTokenSupply(socket string, sids []string) *tokenSupply {
	return &tokenSupply{socket: socket, sids: sids, keys: make([][]ed25519.PrivateKey, len(sids))}
}

// fill makes tokens until every client holds need of them, sixteen operator
// requests at a time (the CA commits concurrent ones together), and returns
// how many it made and how long that took.
func (s *tokenSupply) fill(need int) (made int, took time.Duration) {
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, sid := range s.sids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(s.keys[i]) < need {
				token, err := makeToken(s.socket, sid)
				if err != nil {
					fatalf("make a token for %s: %v", sid, err)
				}
				key, err := ca.TokenKey(token)
				if err != nil {
					fatalf("token for %s: %v", sid, err)
				}
				s.keys[i] = append(s.keys[i], key)
				mu.Lock()
				made++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return made, time.Since(start)
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
// enrolls its CSR again and again for one window, each request authorized by
// a token of its own — the token key's Ed25519 signature over the request's
// binding, made in the window, as a client makes it. It returns certificates
// issued per second and the most tokens one client spent.
func tokenEnrollLoad(addr string, fp [32]byte, csrs [][]byte, s *tokenSupply) (rate float64, mostSpent int) {
	spent := make([]int, len(csrs))
	rate = throughput(len(csrs), func(i int) (func() error, func()) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fatalf("dial CA: %v", err)
		}
		wc := wire.NewConn(c, wire.Options{})
		sid := s.sids[i]
		return func() error {
			if spent[i] == len(s.keys[i]) {
				return fmt.Errorf("client %s spent all its %d tokens within the window: raise the margin of tokenNeed", sid, len(s.keys[i]))
			}
			key := s.keys[i][spent[i]]
			binding := wire.EnrollBinding(wire.AuthToken, wire.ProfileStudent, sid, fp, csrs[i])
			req := &wire.EnrollRequest{
				Version: wire.ProtocolVersion, Profile: wire.ProfileStudent, SID: sid, CSR: csrs[i], Root: fp,
				Auth: wire.AuthToken, TokenKey: key.Public().(ed25519.PublicKey), Signature: ed25519.Sign(key, binding),
			}
			if err := enrollOnce(wc, req); err != nil {
				return fmt.Errorf("enroll with a token: %w", err)
			}
			spent[i]++
			return nil
		}, func() { c.Close() }
	})
	for i, n := range spent {
		s.keys[i] = s.keys[i][n:]
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
