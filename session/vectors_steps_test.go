package session

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"pkiboard/internal/vectors"
	"pkiboard/rc4"
)

// checkSessionSteps checks each value of a committed session vector from
// the values before it, as PROTOCOL.md's appendix says a reader can: with
// the standard library, the vectors package's implementations of the RFCs
// (themselves checked against the published vectors) and RC4 (checked
// against RFC 6229), and none of this package's or package wire's code —
// every encoding is rebuilt here by hand from PROTOCOL.md §5.
func checkSessionSteps(pkiData, statusData, data []byte) error {
	var p vecPKI
	var s vecStatusFile
	var v sessionFile
	for _, f := range []struct {
		data []byte
		v    any
	}{{pkiData, &p}, {statusData, &s}, {data, &v}} {
		if err := vectors.Decode(f.data, f.v); err != nil {
			return err
		}
	}
	in, hv := v.Inputs, v.Handshake
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	same := func(name string, got, want []byte) {
		if !bytes.Equal(got, want) {
			fail("%s: the vector has %.40x…, the steps give %.40x…", name, got, want)
		}
	}

	st, ok := p.Students[in.Student]
	if !ok {
		return fmt.Errorf("no student %q in pki.json", in.Student)
	}
	studentKey, err := stepKey(st.KeyPKCS8)
	if err != nil {
		return err
	}
	boardKey, err := stepKey(p.Board.KeyPKCS8)
	if err != nil {
		return err
	}
	if in.SID != st.Name || in.BoardName != p.Board.Name {
		fail("the SID or the board's name is not pki.json's")
	}
	at, err := time.Parse(time.RFC3339Nano, in.StudentTime)
	if err != nil || uint64(at.UnixMilli()) != in.StudentTimeMS {
		fail("student_time_ms is not student_time")
	}
	boardAt, err := time.Parse(time.RFC3339Nano, in.BoardTime)
	if d := boardAt.Sub(at); err != nil || d > 5*time.Minute || d < -5*time.Minute {
		fail("board_time is not within the hello window (5 minutes) of student_time")
	}
	for _, e := range []vecEntity{p.Root, p.Board, st} {
		cert, err := x509.ParseCertificate(e.Certificate)
		if err != nil || at.Before(cert.NotBefore) || at.After(cert.NotAfter) || boardAt.Before(cert.NotBefore) || boardAt.After(cert.NotAfter) {
			fail("the certificate of %s is not valid at the session's times", e.Name)
		}
	}
	if t := uint64(at.Unix()); t < s.Status.ThisUpdate || t > s.Status.NextUpdate {
		fail("the board's status is not valid at student_time")
	}
	received, err := time.Parse(time.RFC3339Nano, in.Received)
	if err != nil || uint64(received.UnixMilli()) != in.ReceivedMS {
		fail("received_ms is not received")
	}

	// The student's X-Wing key, from its seed.
	xk, err := vectors.XWingFromSeed(in.XWingSeed)
	if err != nil {
		return err
	}
	same("kem_public_key", hv.KEMPublicKey, xk.PublicKey)

	// ClientHello: 0x20, version u16, sid string8, certificate bytes16,
	// random fixed[32], time u64, suites list8<u16>, kem u16, kem_public
	// bytes16 — the signed prefix p — then signature bytes16.
	hello := binary.BigEndian.AppendUint16([]byte{0x20}, 2)
	hello = appendString8(hello, in.SID)
	hello = appendBytes16(hello, st.Certificate)
	hello = append(hello, in.ClientRandom...)
	hello = binary.BigEndian.AppendUint64(hello, in.StudentTimeMS)
	hello = append(hello, byte(len(in.SuitesOffered)))
	for _, id := range in.SuitesOffered {
		hello = binary.BigEndian.AppendUint16(hello, id)
	}
	hello = binary.BigEndian.AppendUint16(hello, 0x647a)
	hello = appendBytes16(hello, hv.KEMPublicKey)
	prefixSum := sha256.Sum256(hello)
	same("hello_prefix_sha256", hv.HelloPrefixSHA256, prefixSum[:])
	same("hello_signed_bytes", hv.HelloSignedBytes, append([]byte("pkiboard v2 client hello\x00"), prefixSum[:]...))
	if err := stepSignature(studentKey, hv.HelloSignedBytes, hv.HelloSignature, hv.HelloSignatureSalt); err != nil {
		fail("hello_signature: %v", err)
	}
	chFrame := stepFrame(appendBytes16(hello, hv.HelloSignature))
	same("client_hello_frame", hv.ClientHelloFrame, chFrame)
	hHello := sha256.Sum256(chFrame)
	same("h_hello", hv.HHello, hHello[:])

	// The board's choices: the first suite offered that it allows; the key
	// transport of the student's key.
	suite := uint16(0)
	for _, id := range in.SuitesOffered {
		if id == 0x0001 || id == 0x0002 && in.AllowRC4 {
			suite = id
			break
		}
	}
	if hv.Suite != suite {
		fail("suite %d is not the first offered that the board allows (%d)", hv.Suite, suite)
	}
	kt := uint8(1)
	if k, ok := studentKey.Public().(*ecdsa.PublicKey); ok {
		kt = map[int]uint8{256: 2, 384: 3}[k.Curve.Params().BitSize]
	}
	if hv.KeyTransport != kt {
		fail("key_transport %d is not the student key's (%d)", hv.KeyTransport, kt)
	}

	// The session key, to the student's key.
	label := append([]byte("pkiboard v2 session key"), hHello[:]...)
	same("session_key_label", hv.SessionKeyLabel, label)
	switch k := studentKey.(type) {
	case *rsa.PrivateKey:
		c, err := vectors.EncryptOAEP(&k.PublicKey, in.SessionKey, label, in.OAEPSeed)
		if err != nil {
			return err
		}
		same("encrypted_key (RSA-OAEP with oaep_seed)", hv.EncryptedKey, c)
		if hv.HPKE != nil {
			fail("an RSA key transport with HPKE values")
		}
	case *ecdsa.PrivateKey:
		if hv.HPKE == nil || in.OAEPSeed != nil {
			return errors.New("an HPKE key transport without its values, or with an OAEP seed")
		}
		kem := map[uint8]uint16{2: vectors.KEMP256, 3: vectors.KEMP384}[kt]
		h := hv.HPKE
		same("encrypted_key (enc || ciphertext)", hv.EncryptedKey, append(bytes.Clone(h.Enc), h.Ciphertext...))
		dk, err := k.ECDH()
		if err != nil {
			return err
		}
		ss, err := vectors.DHKEMDecap(kem, dk, h.Enc)
		if err != nil {
			return err
		}
		same("hpke.shared_secret", h.SharedSecret, ss)
		ctx, err := vectors.KeySchedule(kem, vectors.KDFSHA256, vectors.AEADAES256GCM, ss, label)
		if err != nil {
			return err
		}
		same("hpke.key", h.Key, ctx.Key)
		same("hpke.base_nonce", h.BaseNonce, ctx.BaseNonce)
		pt, err := ctx.Open(nil, h.Ciphertext)
		if err != nil {
			fail("hpke.ciphertext does not open: %v", err)
		}
		same("the session key in hpke.ciphertext", pt, in.SessionKey)
	}

	// The X-Wing exchange: HPKE base mode, KEM 0x647a, HKDF-SHA256,
	// export-only, info "pkiboard v2 pq" || H_hello.
	info := append([]byte("pkiboard v2 pq"), hHello[:]...)
	same("kem_info", hv.KEMInfo, info)
	enc, ss, err := vectors.XWingEncapsulate(hv.KEMPublicKey, in.XWingEncapsulationRandomness)
	if err != nil {
		return err
	}
	same("kem_ciphertext", hv.KEMCiphertext, enc)
	same("kem_shared_secret", hv.KEMSharedSecret, ss)
	if got, err := xk.Decapsulate(hv.KEMCiphertext); err != nil || !bytes.Equal(got, ss) {
		fail("the student's decapsulation of kem_ciphertext is not kem_shared_secret")
	}
	ctx, err := vectors.KeySchedule(vectors.KEMXWing, vectors.KDFSHA256, vectors.AEADExportOnly, ss, info)
	if err != nil {
		return err
	}
	same("kem_exporter_secret", hv.KEMExporterSecret, ctx.ExporterSecret)
	pq := ctx.Export([]byte("pkiboard v2 pq secret"), 32)
	same("pq_secret", hv.PQSecret, pq)

	// ServerHello: 0x21, version u16, random fixed[32], suite u16,
	// key_transport u8, encrypted_key, kem_ciphertext, certificate and status
	// bytes16.
	server := binary.BigEndian.AppendUint16([]byte{0x21}, 2)
	server = append(server, in.BoardRandom...)
	server = binary.BigEndian.AppendUint16(server, hv.Suite)
	server = append(server, hv.KeyTransport)
	for _, b := range [][]byte{hv.EncryptedKey, hv.KEMCiphertext, p.Board.Certificate, s.Encoding} {
		server = appendBytes16(server, b)
	}
	shFrame := stepFrame(server)
	same("server_hello_frame", hv.ServerHelloFrame, shFrame)

	// ServerVerify: the board's signature over SHA-256(ClientHello frame ||
	// ServerHello frame).
	pair := sha256.Sum256(append(bytes.Clone(chFrame), shFrame...))
	same("server_verify_signed_bytes", hv.ServerVerifySignedBytes, append([]byte("pkiboard v2 server verify\x00"), pair[:]...))
	if err := stepSignature(boardKey, hv.ServerVerifySignedBytes, hv.ServerVerifySignature, nil); err != nil {
		fail("server_verify_signature: %v", err)
	}
	svFrame := stepFrame(appendBytes16([]byte{0x22}, hv.ServerVerifySignature))
	same("server_verify_frame", hv.ServerVerifyFrame, svFrame)
	th := sha256.Sum256(append(append(bytes.Clone(chFrame), shFrame...), svFrame...))
	same("th", hv.TH, th[:])

	// The key schedule.
	prk, err := hkdf.Extract(sha256.New, append(bytes.Clone(in.SessionKey), pq...), append(bytes.Clone(in.ClientRandom), in.BoardRandom...))
	if err != nil {
		return err
	}
	same("prk", v.Keys.PRK, prk)
	keys := map[string][]byte{}
	for _, k := range []struct {
		name, dir, part string
		n               int
		got             []byte
	}{
		{"c2s_key", "c2s", "key", 32, v.Keys.C2SKey}, {"c2s_mac", "c2s", "mac", 32, v.Keys.C2SMAC}, {"c2s_iv", "c2s", "iv", 16, v.Keys.C2SIV},
		{"s2c_key", "s2c", "key", 32, v.Keys.S2CKey}, {"s2c_mac", "s2c", "mac", 32, v.Keys.S2CMAC}, {"s2c_iv", "s2c", "iv", 16, v.Keys.S2CIV},
	} {
		out, err := hkdf.Expand(sha256.New, prk, "pkiboard v2 "+k.dir+" "+k.part+string(th[:]), k.n)
		if err != nil {
			return err
		}
		same(k.name, k.got, out)
		keys[k.name] = out
	}

	// The submission's messages, in order of sending.
	sum := sha256.Sum256(in.FileContent)
	statement := append([]byte("pkiboard v2 submission\x00"), th[:]...)
	statement = appendString8(statement, in.SID)
	statement = appendString8(statement, in.FileName)
	statement = binary.BigEndian.AppendUint64(statement, uint64(len(in.FileContent)))
	statement = append(statement, sum[:]...)
	sub := v.Submission
	same("submission.statement", sub.Statement, statement)
	if err := stepSignature(studentKey, statement, sub.Signature, sub.SignatureSalt); err != nil {
		fail("submission.signature: %v", err)
	}
	if sub.Name != in.FileName || sub.Size != uint64(len(in.FileContent)) || !bytes.Equal(sub.SHA256, sum[:]) {
		fail("submission's name, size or sha256 is not the file's")
	}
	boardSum := sha256.Sum256(p.Board.Certificate)
	r := sub.Receipt
	if r.ID != in.ReceiptID || r.SID != in.SID || !bytes.Equal(r.Serial, st.Serial) || r.Name != in.FileName ||
		r.Size != sub.Size || !bytes.Equal(r.SHA256, sum[:]) || r.Received != in.ReceivedMS || !bytes.Equal(r.BoardCertSHA256, boardSum[:]) {
		fail("the receipt's fields are not the submission's")
	}
	receipt := appendString8(nil, r.ID)
	receipt = appendString8(receipt, r.SID)
	receipt = append(append(receipt, byte(len(r.Serial))), r.Serial...)
	receipt = appendString8(receipt, r.Name)
	receipt = binary.BigEndian.AppendUint64(receipt, r.Size)
	receipt = append(receipt, r.SHA256...)
	receipt = binary.BigEndian.AppendUint64(receipt, r.Received)
	receipt = append(receipt, r.BoardCertSHA256...)
	same("submission.receipt_signed_bytes", sub.ReceiptSignedBytes, append([]byte("pkiboard v2 receipt\x00"), receipt...))
	if err := stepSignature(boardKey, sub.ReceiptSignedBytes, r.Signature, nil); err != nil {
		fail("receipt.signature: %v", err)
	}
	fileHeader := appendString8(nil, in.FileName)
	fileHeader = binary.BigEndian.AppendUint64(fileHeader, uint64(len(in.FileContent)))
	fileHeader = append(fileHeader, sum[:]...)
	want := []struct {
		dir  string
		typ  uint8
		body []byte
	}{
		{"c2s", 0x04, fileHeader},                          // FileHeader
		{"s2c", 0x05, make([]byte, 8)},                     // FileOffset 0
		{"c2s", 0x06, in.FileContent},                      // Data: the whole of a short file
		{"c2s", 0x23, appendBytes16(nil, sub.Signature)},   // SubmitEnd
		{"s2c", 0x24, appendBytes16(receipt, r.Signature)}, // Receipt
	}
	if len(v.Records) != len(want) {
		return errors.Join(append(errs, fmt.Errorf("%d records, want %d", len(v.Records), len(want)))...)
	}
	streams := map[string]cipher.Stream{}
	seqs, offsets := map[string]uint64{}, map[string]uint64{}
	for _, dir := range []string{"c2s", "s2c"} {
		if streams[dir], err = stepCipher(hv.Suite, keys[dir+"_key"], keys[dir+"_iv"]); err != nil {
			return err
		}
	}
	for i, w := range want {
		rec := v.Records[i]
		name := fmt.Sprintf("records[%d]", i)
		if rec.Direction != w.dir || rec.Type != w.typ || rec.Seq != seqs[w.dir] || rec.KeystreamOffset != offsets[w.dir] {
			fail("%s: %s seq %d type 0x%02x at offset %d; want %s seq %d type 0x%02x at %d",
				name, rec.Direction, rec.Seq, rec.Type, rec.KeystreamOffset, w.dir, seqs[w.dir], w.typ, offsets[w.dir])
		}
		same(name+".plaintext", rec.Plaintext, w.body)
		ct := make([]byte, len(w.body))
		streams[w.dir].XORKeyStream(ct, w.body)
		same(name+".ciphertext", rec.Ciphertext, ct)
		mac := hmac.New(sha256.New, keys[w.dir+"_mac"])
		mac.Write(binary.BigEndian.AppendUint64(nil, seqs[w.dir]))
		mac.Write([]byte{w.typ})
		mac.Write(binary.BigEndian.AppendUint32(nil, uint32(len(ct))))
		mac.Write(ct)
		tag := mac.Sum(nil)
		same(name+".tag", rec.Tag, tag)
		same(name+".frame", rec.Frame, stepFrame(append(append([]byte{w.typ}, ct...), tag...)))
		seqs[w.dir]++
		offsets[w.dir] += uint64(len(ct))
	}

	if err := stepReceiptFile(sub.ReceiptFile, r, p.Board.Certificate); err != nil {
		fail("submission.receipt_file: %v", err)
	}
	return errors.Join(errs...)
}

// stepCipher returns a direction's keystream: AES-256-CTR from the IV, or
// RC4 with its first 1536 bytes dropped.
func stepCipher(suite uint16, key, iv []byte) (cipher.Stream, error) {
	switch suite {
	case 0x0001:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewCTR(b, iv), nil
	case 0x0002:
		return rc4.NewCipherDrop(key, 1536)
	}
	return nil, fmt.Errorf("suite 0x%04x", suite)
}

// stepReceiptFile checks a receipt file against PROTOCOL.md §5.5's table.
func stepReceiptFile(text string, r vecReceipt, board []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &fields); err != nil {
		return err
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"board_certificates", "id", "name", "received", "serial", "sha256", "sid", "signature", "size", "version"}) {
		return fmt.Errorf("its keys are %v", keys)
	}
	var f struct {
		version                                            int
		id, sid, serial, name, sha256, received, signature string
		size                                               uint64
		boardCertificates                                  []string
	}
	get := func(key string, v any) error { return json.Unmarshal(fields[key], v) }
	err := errors.Join(get("version", &f.version), get("id", &f.id), get("sid", &f.sid), get("serial", &f.serial),
		get("name", &f.name), get("size", &f.size), get("sha256", &f.sha256), get("received", &f.received),
		get("signature", &f.signature), get("board_certificates", &f.boardCertificates))
	if err != nil {
		return err
	}
	received := time.UnixMilli(int64(r.Received)).UTC().Format("2006-01-02T15:04:05.000Z")
	switch {
	case f.version != 2 || f.id != r.ID || f.sid != r.SID || f.name != r.Name || f.size != r.Size:
		return errors.New("version, id, sid, name or size is not the receipt's")
	case f.serial != hex.EncodeToString(r.Serial) || f.sha256 != hex.EncodeToString(r.SHA256) || f.signature != hex.EncodeToString(r.Signature):
		return errors.New("serial, sha256 or signature is not the receipt's in lowercase hex")
	case f.received != received:
		return fmt.Errorf("received %q, want %q", f.received, received)
	case len(f.boardCertificates) != 1 || f.boardCertificates[0] != base64.StdEncoding.EncodeToString(board):
		return errors.New("board_certificates is not the board's certificate in standard base64")
	}
	return nil
}

// stepSignature checks that sig is key's signature over msg by PROTOCOL.md
// §5.1's scheme, made deterministically: ECDSA by RFC 6979 (SHA-256 for
// P-256, SHA-384 for P-384), or RSA-PSS with SHA-256, MGF1-SHA-256 and the
// 32-byte salt given.
func stepSignature(key crypto.Signer, msg, sig, salt []byte) error {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		h := crypto.SHA256
		if k.Curve == elliptic.P384() {
			h = crypto.SHA384
		}
		d := h.New()
		d.Write(msg)
		want, err := k.Sign(nil, d.Sum(nil), h)
		if err != nil {
			return err
		}
		if !bytes.Equal(sig, want) || salt != nil {
			return errors.New("not the RFC 6979 signature")
		}
	case *rsa.PrivateKey:
		d := sha256.Sum256(msg)
		if len(salt) != 32 {
			return errors.New("an RSA-PSS signature needs its 32-byte salt")
		}
		// RSA is a permutation: sig is the signature with this salt exactly
		// when sig^e mod n is the encoding EMSA-PSS makes with it.
		em, err := vectors.EncodePSS(crypto.SHA256, d[:], salt, k.N.BitLen()-1)
		if err != nil {
			return err
		}
		m := new(big.Int).Exp(new(big.Int).SetBytes(sig), big.NewInt(int64(k.E)), k.N)
		if len(sig) != k.Size() || !bytes.Equal(m.FillBytes(make([]byte, len(em))), em) ||
			rsa.VerifyPSS(&k.PublicKey, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: 32}) != nil {
			return errors.New("not the RSA-PSS signature with this salt")
		}
	default:
		return fmt.Errorf("a %T key", key)
	}
	return nil
}

func stepKey(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	return k.(crypto.Signer), nil
}

// stepFrame returns the frame of payload: its u32 length, then itself.
func stepFrame(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

func appendString8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

func appendBytes16(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(v))), v...)
}
