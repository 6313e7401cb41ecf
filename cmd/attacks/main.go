// Command attacks is what `make attacks` runs: it starts the real CA and board
// from the pkiboard executable on loopback, plays every row of the attack
// table against them — a legitimate student through the adversary
// (pkiboard --role=adversary) for each attack on the session, then the
// attacks on what surrounds it (the CA exchange, the board's identity,
// strangers' floods, forged evidence, revocation) — and prints a Markdown
// table of what the attacker did, who detected it and how, and what came of
// it, with the figures measured. It exits 1 if any attack was not defeated
// as expected, 2 if the lab could not run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"pkiboard/internal/attacklab"
)

func main() {
	os.Exit(run())
}

func run() int {
	bin := flag.String("bin", "bin/pkiboard", "the pkiboard `executable` to run")
	keep := flag.Bool("keep", false, "keep the working directory (its path is printed)")
	only := flag.String("only", "", "run only the attacks whose name or short name contains `TEXT`")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	lab, err := attacklab.Start(ctx, attacklab.Options{Bin: *bin, Keep: *keep, Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "attacks: %v\n", err)
		return 2
	}
	var results []*attacklab.Result
	for _, row := range attacklab.Rows() {
		if !strings.Contains(row.Name, *only) && !strings.Contains(row.ID, *only) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		results = append(results, lab.Play(ctx, row))
	}
	if err := lab.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "attacks: %v\n", err)
	}
	fmt.Print(attacklab.Markdown(results))
	if attacklab.AllDefeated(results) {
		return 0
	}
	for _, r := range results {
		if r.Verdict != attacklab.Defeated {
			fmt.Fprintf(os.Stderr, "\n== %s: %s\n  %s\n%s\n", r.Name, r.Verdict, strings.Join(r.Problems, "\n  "), r.Evidence)
		}
	}
	return 1
}
