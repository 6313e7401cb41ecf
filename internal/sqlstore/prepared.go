package sqlstore

import (
	"database/sql"
	"sync"
	"sync/atomic"
)

// Prepared statements.
//
// SQLite compiles a statement's text into a program each time it is
// prepared, and database/sql prepares the text of every tx.Exec and
// tx.QueryRow anew: for the short statements a daemon runs per request that
// compiling costs more than running them (under enrollment load it was a
// sixth of the CA's CPU, most of it the parser and the code of the CHECK
// constraints of an INSERT). Options.Prepared names the statements a daemon
// runs most; Open prepares each once for the writer's connection and for the
// readers', and Exec, QueryRow and Query run them prepared inside View's and
// Update's transactions. A statement not named there is prepared from its
// text as tx.Exec would, and counted (Stats.Unprepared).

// savepointSQL are the statements the committer runs around each function of
// a shared transaction: prepared for the writer like Options.Prepared.
var savepointSQL = []string{"SAVEPOINT w", "ROLLBACK TO w", "RELEASE w"}

// txStatements maps each transaction View and Update run to the statements
// prepared on its connection pool, for as long as it runs: Exec, QueryRow
// and Query are given only the *sql.Tx.
var txStatements sync.Map // *sql.Tx → *statements

// statements are the prepared statements of one connection pool, by text,
// and the count of statements run from their text in its transactions.
type statements struct {
	m          map[string]*sql.Stmt
	unprepared *atomic.Int64 // the DB's
}

// prepareAll prepares each query on pool. A statement that does not prepare
// (a write on the read-only readers) is left out: it runs from its text, and
// fails there as it would.
func prepareAll(pool *sql.DB, unprepared *atomic.Int64, queries ...[]string) *statements {
	st := &statements{m: map[string]*sql.Stmt{}, unprepared: unprepared}
	for _, qs := range queries {
		for _, q := range qs {
			if _, ok := st.m[q]; ok {
				continue
			}
			if s, err := pool.Prepare(q); err == nil {
				st.m[q] = s
			}
		}
	}
	return st
}

func (st *statements) close() {
	if st == nil {
		return
	}
	for _, s := range st.m {
		s.Close()
	}
}

// track makes tx's statements those of st until the returned func is called.
func track(tx *sql.Tx, st *statements) (untrack func()) {
	txStatements.Store(tx, st)
	return func() { txStatements.Delete(tx) }
}

// preparedIn returns query as prepared on tx's connection, or nil when it was
// not prepared (not named in Options.Prepared, or tx not one of View's or
// Update's).
func preparedIn(tx *sql.Tx, query string) *sql.Stmt {
	v, ok := txStatements.Load(tx)
	if !ok {
		return nil
	}
	st := v.(*statements)
	s := st.m[query]
	if s == nil {
		st.unprepared.Add(1)
		return nil
	}
	return tx.Stmt(s)
}

// Exec runs query in tx with args, as tx.Exec does, prepared once if it is
// one of Options.Prepared.
func Exec(tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if s := preparedIn(tx, query); s != nil {
		return s.Exec(args...)
	}
	return tx.Exec(query, args...)
}

// QueryRow runs query in tx with args, as tx.QueryRow does, prepared once if
// it is one of Options.Prepared.
func QueryRow(tx *sql.Tx, query string, args ...any) *sql.Row {
	if s := preparedIn(tx, query); s != nil {
		return s.QueryRow(args...)
	}
	return tx.QueryRow(query, args...)
}

// Query runs query in tx with args, as tx.Query does, prepared once if it is
// one of Options.Prepared.
func Query(tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if s := preparedIn(tx, query); s != nil {
		return s.Query(args...)
	}
	return tx.Query(query, args...)
}
