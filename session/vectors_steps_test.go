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
	if (v.Submission == nil) == (v.History == nil) {
		return errors.New("a session vector has a submission or a history, and only one")
	}
	if v.Submission != nil {
		received, err := time.Parse(time.RFC3339Nano, in.Received)
		if err != nil || uint64(received.UnixMilli()) != in.ReceivedMS {
			fail("received_ms is not received")
		}
		if d := received.Sub(boardAt); d < 0 || d > time.Minute {
			fail("received is not the board's time of the session")
		}
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
	hello := binary.BigEndian.AppendUint16([]byte{0x20}, 4)
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
		if id == 0x0003 || id == 0x0001 || id == 0x0002 && in.AllowRC4 {
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
	server := binary.BigEndian.AppendUint16([]byte{0x21}, 4)
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

	// The request's messages, in order of sending.
	var want []stepRecord
	boardSum := sha256.Sum256(p.Board.Certificate)
	if v.History != nil {
		want = stepHistory(v.History, st, p.Board.Certificate, boardKey, at, fail)
	} else {
		want = stepSubmission(&v, st, boardSum[:], studentKey, boardKey, th, p.Board.Certificate, fail)
	}
	if len(v.Records) != len(want) {
		return errors.Join(append(errs, fmt.Errorf("%d records, want %d", len(v.Records), len(want)))...)
	}
	if hv.Suite == 0x0003 {
		return errors.Join(append(errs, stepGCMRecords(v.Records, want, keys))...)
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
		if rec.Direction != w.dir || rec.Type != w.typ || rec.Seq != seqs[w.dir] || rec.KeystreamOffset == nil || *rec.KeystreamOffset != offsets[w.dir] ||
			rec.Nonce != nil || rec.AAD != nil {
			fail("%s: %s seq %d type 0x%02x at offset %v; want %s seq %d type 0x%02x at %d, and no nonce or aad",
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

	return errors.Join(errs...)
}

// stepGCMRecords checks the records of aes-256-gcm (PROTOCOL.md §5.3):
// nonce = iv[:12] XOR seq, aad = type || n, and AES-256-GCM's sealing of
// each body with the direction's key.
func stepGCMRecords(recs []vecRecord, want []stepRecord, keys map[string][]byte) error {
	var errs []error
	seqs := map[string]uint64{}
	for i, w := range want {
		rec := recs[i]
		name := fmt.Sprintf("records[%d]", i)
		seq := seqs[w.dir]
		if rec.Direction != w.dir || rec.Type != w.typ || rec.Seq != seq || rec.KeystreamOffset != nil {
			errs = append(errs, fmt.Errorf("%s: %s seq %d type 0x%02x; want %s seq %d type 0x%02x and no keystream offset",
				name, rec.Direction, rec.Seq, rec.Type, w.dir, seq, w.typ))
		}
		nonce := bytes.Clone(keys[w.dir+"_iv"][:12])
		for j := range 8 {
			nonce[4+j] ^= byte(seq >> (56 - 8*j))
		}
		aad := binary.BigEndian.AppendUint32([]byte{w.typ}, uint32(len(w.body)))
		block, err := aes.NewCipher(keys[w.dir+"_key"])
		if err != nil {
			return err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return err
		}
		sealed := gcm.Seal(nil, nonce, w.body, aad)
		ct, tag := sealed[:len(w.body)], sealed[len(w.body):]
		for _, c := range []struct {
			field     string
			got, want []byte
		}{
			{"nonce", rec.Nonce, nonce}, {"aad", rec.AAD, aad}, {"plaintext", rec.Plaintext, w.body},
			{"ciphertext", rec.Ciphertext, ct}, {"tag", rec.Tag, tag},
			{"frame", rec.Frame, stepFrame(append([]byte{w.typ}, sealed...))},
		} {
			if !bytes.Equal(c.got, c.want) {
				errs = append(errs, fmt.Errorf("%s.%s is not as PROTOCOL.md §5.3 makes it", name, c.field))
			}
		}
		seqs[w.dir]++
	}
	return errors.Join(errs...)
}

// stepRecord is a record's direction, type and body, as the steps make it.
type stepRecord = struct {
	dir  string
	typ  uint8
	body []byte
}

// stepSafeName maps a file's original name to the name it travels under
// (PROTOCOL.md §5.4): its last 128 bytes, the first of them then `_`; every
// byte outside [A-Za-z0-9._+-], and a first `.` or `-`, becomes `_`.
func stepSafeName(original string) string {
	b := []byte(original)
	if len(b) > 128 {
		b = b[len(b)-128:]
		b[0] = '_'
	}
	for i, c := range b {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' || c == '+'
		if !ok || i == 0 && (c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "report"
	}
	return string(b)
}

// stepReceiptBody returns a receipt's signed bytes and its body, of version
// 3 (its assignment, original, due, late and version in their places) or 2.
func stepReceiptBody(version uint16, r vecReceipt) (signed, body []byte) {
	b := appendString8(nil, r.ID)
	b = appendString8(b, r.SID)
	b = append(append(b, byte(len(r.Serial))), r.Serial...)
	if version == 3 {
		b = appendString8(b, r.Assignment)
		b = appendBytes16(b, []byte(r.Original))
	}
	b = appendString8(b, r.Name)
	b = binary.BigEndian.AppendUint64(b, r.Size)
	b = append(b, r.SHA256...)
	b = binary.BigEndian.AppendUint64(b, r.Received)
	if version == 3 {
		b = binary.BigEndian.AppendUint64(b, r.Due)
		b = binary.BigEndian.AppendUint64(b, r.Late)
		b = binary.BigEndian.AppendUint32(b, r.Version)
	}
	b = append(b, r.BoardCertSHA256...)
	context := map[uint16]string{2: "pkiboard v2 receipt\x00", 3: "pkiboard v3 receipt\x00"}[version]
	return append([]byte(context), b...), appendBytes16(b, r.Signature)
}

// stepSubmission checks a submission's evidence and returns its records:
// SubmitRequest, Terms, FileHeader, FileOffset, Data, SubmitEnd, Receipt.
func stepSubmission(v *sessionFile, st vecEntity, boardSum []byte, studentKey, boardKey crypto.Signer, th [32]byte, boardCert []byte, fail func(string, ...any)) []stepRecord {
	in, sub := v.Inputs, v.Submission
	same := func(name string, got, want []byte) {
		if !bytes.Equal(got, want) {
			fail("%s: the vector has %.40x…, the steps give %.40x…", name, got, want)
		}
	}
	if in.Terms == nil {
		fail("a submission without the terms")
		return nil
	}
	sum := sha256.Sum256(in.FileContent)
	name := stepSafeName(in.FileName)
	// SubmitRequest: assignment string8, original string16, name string8,
	// size u64, sha256 fixed[32].
	request := appendString8(nil, in.Assignment)
	request = appendBytes16(request, []byte(in.FileName))
	request = appendString8(request, name)
	request = binary.BigEndian.AppendUint64(request, uint64(len(in.FileContent)))
	request = append(request, sum[:]...)
	// Terms: assignment string8, opens, due, lock u64, extended u8,
	// max_size u64.
	t := in.Terms
	terms := appendString8(nil, in.Assignment)
	for _, x := range []uint64{t.Opens, t.Due, t.Lock} {
		terms = binary.BigEndian.AppendUint64(terms, x)
	}
	terms = append(terms, map[bool]byte{false: 0, true: 1}[t.Extended])
	terms = binary.BigEndian.AppendUint64(terms, t.MaxSize)
	same("submission.terms_body", sub.TermsBody, terms)
	if t.Lock != 0 && in.ReceivedMS >= t.Lock || t.Opens > in.ReceivedMS {
		fail("the submission is received outside the terms' opens..lock")
	}

	statement := append([]byte("pkiboard v3 submission\x00"), th[:]...)
	statement = appendString8(statement, in.SID)
	statement = append(statement, terms...)
	statement = appendBytes16(statement, []byte(in.FileName))
	statement = appendString8(statement, name)
	statement = binary.BigEndian.AppendUint64(statement, uint64(len(in.FileContent)))
	statement = append(statement, sum[:]...)
	same("submission.statement", sub.Statement, statement)
	if err := stepSignature(studentKey, statement, sub.Signature, sub.SignatureSalt); err != nil {
		fail("submission.signature: %v", err)
	}
	if sub.Name != name || sub.Size != uint64(len(in.FileContent)) || !bytes.Equal(sub.SHA256, sum[:]) {
		fail("submission's name, size or sha256 is not the file's")
	}
	r := sub.Receipt
	late := uint64(0)
	if t.Due != 0 && in.ReceivedMS > t.Due {
		late = in.ReceivedMS - t.Due
	}
	if r.ID != in.ReceiptID || r.SID != in.SID || !bytes.Equal(r.Serial, st.Serial) || r.Assignment != in.Assignment ||
		r.Original != in.FileName || r.Name != name || r.Size != sub.Size || !bytes.Equal(r.SHA256, sum[:]) ||
		r.Received != in.ReceivedMS || r.Due != t.Due || r.Late != late || r.Version != 1 || !bytes.Equal(r.BoardCertSHA256, boardSum) {
		fail("the receipt's fields are not the submission's")
	}
	signed, receipt := stepReceiptBody(3, r)
	same("submission.receipt_signed_bytes", sub.ReceiptSignedBytes, signed)
	if err := stepSignature(boardKey, signed, r.Signature, nil); err != nil {
		fail("receipt.signature: %v", err)
	}
	if err := stepReceiptFile(sub.ReceiptFile, 3, r, boardCert); err != nil {
		fail("submission.receipt_file: %v", err)
	}
	fileHeader := appendString8(nil, name)
	fileHeader = binary.BigEndian.AppendUint64(fileHeader, uint64(len(in.FileContent)))
	fileHeader = append(fileHeader, sum[:]...)
	return []stepRecord{
		{"c2s", 0x25, request},                           // SubmitRequest
		{"s2c", 0x26, terms},                             // Terms
		{"c2s", 0x04, fileHeader},                        // FileHeader
		{"s2c", 0x05, make([]byte, 8)},                   // FileOffset 0
		{"c2s", 0x06, in.FileContent},                    // Data: the whole of a short file
		{"c2s", 0x23, appendBytes16(nil, sub.Signature)}, // SubmitEnd
		{"s2c", 0x24, receipt},                           // Receipt
	}
}

// stepHistory checks a history's receipts and returns its records:
// HistoryRequest, then one History holding them all.
func stepHistory(h *vecHistory, st vecEntity, boardCert []byte, boardKey crypto.Signer, now time.Time, fail func(string, ...any)) []stepRecord {
	boardSum := sha256.Sum256(boardCert)
	history := []byte{0, byte(len(h.Items))} // more 0, then the items
	last := uint64(1<<64 - 1)
	for i, it := range h.Items {
		name := fmt.Sprintf("history.items[%d]", i)
		r := it.Receipt
		if it.Version != 2 && it.Version != 3 {
			fail("%s: version %d", name, it.Version)
			continue
		}
		signed, body := stepReceiptBody(it.Version, r)
		if !bytes.Equal(it.SignedBytes, signed) {
			fail("%s.receipt_signed_bytes: not the receipt's fields", name)
		}
		if !bytes.Equal(it.Body, body) {
			fail("%s.receipt_body: not the receipt's fields", name)
		}
		if err := stepSignature(boardKey, signed, r.Signature, nil); err != nil {
			fail("%s.receipt.signature: %v", name, err)
		}
		// Hers, of the assignment asked for, by the board's certificate,
		// not dated after the student's clock, newest first, late as
		// received and due make it.
		late := uint64(0)
		if r.Due != 0 && r.Received > r.Due {
			late = r.Received - r.Due
		}
		if r.SID != st.Name || !bytes.Equal(r.Serial, st.Serial) || h.Assignment != "" && r.Assignment != h.Assignment ||
			!bytes.Equal(r.BoardCertSHA256, boardSum[:]) || r.Received > uint64(now.UnixMilli()) || r.Received > last || r.Late != late {
			fail("%s: the receipt is not one the student accepts in this history", name)
		}
		last = r.Received
		if err := stepReceiptFile(it.ReceiptFile, int(it.Version), r, boardCert); err != nil {
			fail("%s.receipt_file: %v", name, err)
		}
		history = binary.BigEndian.AppendUint16(history, it.Version)
		history = appendBytes16(history, body)
		history = appendBytes16(history, boardCert)
	}
	return []stepRecord{
		{"c2s", 0x27, appendString8(nil, h.Assignment)}, // HistoryRequest
		{"s2c", 0x28, history},                          // History
	}
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

// stepReceiptFile checks a receipt file of version 3 or 2 against
// PROTOCOL.md §5.5's table.
func stepReceiptFile(text string, version int, r vecReceipt, board []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &fields); err != nil {
		return err
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"board_certificates", "id", "name", "received", "serial", "sha256", "sid", "signature", "size", "version"}
	if version == 3 {
		want = []string{"assignment", "board_certificates", "due", "id", "late", "name", "original", "received", "serial", "sha256", "sid", "signature", "size", "submission_version", "version"}
	}
	if !slices.Equal(keys, want) {
		return fmt.Errorf("its keys are %v", keys)
	}
	var f struct {
		version                                            int
		id, sid, serial, name, sha256, received, signature string
		assignment, original                               string
		due                                                *string
		late                                               uint64
		submissionVersion                                  uint32
		size                                               uint64
		boardCertificates                                  []string
	}
	get := func(key string, v any) error {
		if _, ok := fields[key]; !ok && version == 2 {
			return nil
		}
		return json.Unmarshal(fields[key], v)
	}
	err := errors.Join(get("version", &f.version), get("id", &f.id), get("sid", &f.sid), get("serial", &f.serial),
		get("name", &f.name), get("size", &f.size), get("sha256", &f.sha256), get("received", &f.received),
		get("signature", &f.signature), get("board_certificates", &f.boardCertificates),
		get("assignment", &f.assignment), get("original", &f.original), get("due", &f.due), get("late", &f.late),
		get("submission_version", &f.submissionVersion))
	if err != nil {
		return err
	}
	msText := func(ms uint64) string { return time.UnixMilli(int64(ms)).UTC().Format("2006-01-02T15:04:05.000Z") }
	var due *string // null for 0
	if r.Due != 0 {
		d := msText(r.Due)
		due = &d
	}
	switch {
	case f.version != version || f.id != r.ID || f.sid != r.SID || f.name != r.Name || f.size != r.Size:
		return errors.New("version, id, sid, name or size is not the receipt's")
	case f.assignment != r.Assignment || f.original != r.Original || f.late != r.Late || f.submissionVersion != r.Version:
		return errors.New("assignment, original, late or submission_version is not the receipt's")
	case (f.due == nil) != (due == nil) || due != nil && *f.due != *due:
		return fmt.Errorf("due %v, want %v", f.due, due)
	case f.serial != hex.EncodeToString(r.Serial) || f.sha256 != hex.EncodeToString(r.SHA256) || f.signature != hex.EncodeToString(r.Signature):
		return errors.New("serial, sha256 or signature is not the receipt's in lowercase hex")
	case f.received != msText(r.Received):
		return fmt.Errorf("received %q, want %q", f.received, msText(r.Received))
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
