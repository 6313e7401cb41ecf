package wire

import (
	"io"
	"testing"
)

// The transfer benchmarks move benchTotal bytes over loopback TCP in chunks of
// benchChunk, a sender goroutine writing and the benchmark goroutine reading.
// Compare BenchmarkFramedTransfer with BenchmarkRawCopy: framing should cost at
// most a few percent.
const (
	benchTotal = 64 << 20
	benchChunk = 64 << 10
)

// benchSend runs write benchTotal/benchChunk times in a new goroutine and
// returns a channel that reports its error.
func benchSend(write func() error) <-chan error {
	errc := make(chan error, 1)
	go func() {
		for range benchTotal / benchChunk {
			if err := write(); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	return errc
}

// BenchmarkFramedTransfer sends frames of benchChunk bytes with Conn.WriteFrame
// and reads them with Conn.ReadFrame.
func BenchmarkFramedTransfer(b *testing.B) {
	a, c := tcpPair(b)
	w, r := NewConn(a, Options{}), NewConn(c, Options{})
	chunk := payload(benchChunk)
	b.SetBytes(benchTotal)
	b.ReportAllocs()
	for b.Loop() {
		errc := benchSend(func() error { return w.WriteFrame(chunk) })
		for range benchTotal / benchChunk {
			if _, err := r.ReadFrame(); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawCopy is the baseline: the same bytes written in the same chunks
// without framing, received with io.Copy into io.Discard.
func BenchmarkRawCopy(b *testing.B) {
	a, c := tcpPair(b)
	chunk := payload(benchChunk)
	b.SetBytes(benchTotal)
	b.ReportAllocs()
	for b.Loop() {
		errc := benchSend(func() error { _, err := a.Write(chunk); return err })
		if _, err := io.CopyN(io.Discard, c, benchTotal); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDataTransfer is BenchmarkFramedTransfer with Data messages of
// MaxDataChunk bytes, through WriteMessage and ReadMessage.
func BenchmarkDataTransfer(b *testing.B) {
	a, c := tcpPair(b)
	o := Options{MaxFrame: MaxDataChunk + 1}
	w, r := NewConn(a, o), NewConn(c, o)
	d := &Data{Bytes: payload(MaxDataChunk)}
	b.SetBytes(benchTotal)
	b.ReportAllocs()
	for b.Loop() {
		errc := benchSend(func() error { return w.WriteMessage(d) })
		for range benchTotal / benchChunk {
			if _, err := r.ReadMessage(); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalFileHeader measures decoding a typical control message.
func BenchmarkUnmarshalFileHeader(b *testing.B) {
	enc := mustMarshal(&FileHeader{Name: "report.pdf", Size: 1 << 20})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(enc); err != nil {
			b.Fatal(err)
		}
	}
}
