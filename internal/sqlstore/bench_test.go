package sqlstore

import (
	"database/sql"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchValue is the size of a certificate's DER, about.
var benchValue = make([]byte, 800)

const benchInsert = `INSERT INTO items (k, v) VALUES (?, ?)`

func benchPut(k string) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := Exec(tx, benchInsert, k, benchValue)
		return err
	}
}

// BenchmarkUpdateOneWriter is one writer after the other: one durable commit
// (one WAL sync) per Update.
func BenchmarkUpdateOneWriter(b *testing.B) {
	db := openT(b, tempPath(b), Options{})
	i := 0
	for b.Loop() {
		if err := db.Update(benchPut(fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(db.Commits())/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkUpdate16Writers is sixteen concurrent writers: the group commit
// shares each sync among a batch. Its insert runs from its text, or prepared
// once (Options.Prepared).
func BenchmarkUpdate16Writers(b *testing.B) {
	for _, prepared := range []bool{false, true} {
		b.Run(fmt.Sprintf("prepared=%v", prepared), func(b *testing.B) {
			var o Options
			if prepared {
				o.Prepared = []string{benchInsert}
			}
			db := openT(b, tempPath(b), o)
			var n atomic.Int64
			b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := db.Update(benchPut(fmt.Sprint(n.Add(1)))); err != nil {
						b.Error(err)
					}
				}
			})
			st := db.Stats()
			b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/commit")
			b.ReportMetric(float64(st.Writes)/b.Elapsed().Seconds(), "writes/s")
			b.ReportMetric(float64(st.Commits)/b.Elapsed().Seconds(), "commits/s")
			b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(st.Commits), "µs/commit")
		})
	}
}

// BenchmarkRawCommit commits the same rows on the writer connection without
// the group committer (BEGIN IMMEDIATE, INSERT, COMMIT): the floor that
// BenchmarkUpdateOneWriter's cost is to be read against.
func BenchmarkRawCommit(b *testing.B) {
	db := openT(b, tempPath(b), Options{})
	i := 0
	for b.Loop() {
		tx, err := db.writer.Begin()
		if err != nil {
			b.Fatal(err)
		}
		if err := benchPut(fmt.Sprint(i))(tx); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
