// Package logging builds the zap loggers every pkiboard role uses and labels
// protocol steps the way the course does ("STEP 0" … "STEP 6").
//
// It is not a place for policy about what to log; it only makes the output of
// the CA, the board and the student look alike. Nothing secret may be passed to
// these loggers: no private key, session key, token or passphrase.
package logging

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to w at the given level ("debug", "info", "warn"
// or "error") in the given format ("console" or "json"). A nil w means stderr.
func New(level, format string, w zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("logging: level %q: use debug, info, warn or error", level)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = zapcore.StringDurationEncoder
	var encoder zapcore.Encoder
	switch format {
	case "console":
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		enc.ConsoleSeparator = "  "
		encoder = zapcore.NewConsoleEncoder(enc)
	case "json":
		encoder = zapcore.NewJSONEncoder(enc)
	default:
		return nil, fmt.Errorf("logging: format %q: use console or json", format)
	}
	if w == nil {
		w = zapcore.Lock(os.Stderr)
	}
	return zap.New(zapcore.NewCore(encoder, w, lvl), zap.ErrorOutput(w)), nil
}

// FileMode is the mode of a log file a daemon writes: its log names students
// and, where the config asks, what they submitted.
const FileMode = 0o600

// OpenFile opens path to append a daemon's log to it: created with FileMode,
// and, if it exists with access for group or others (an older pkiboard made
// logs 0644), narrowed to FileMode first. The caller closes it.
func OpenFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("logging: log file: %w", err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err == nil && info.Mode().Perm()&^FileMode != 0 {
		err = f.Chmod(FileMode)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logging: log file: %w", err)
	}
	return f, nil
}

// Step logs protocol step n of the course scenario at info level, as
// "STEP n: msg", with the given fields (usually the SID first).
func Step(log *zap.Logger, n int, msg string, fields ...zap.Field) {
	if ce := log.Check(zap.InfoLevel, stepMessage(n, msg)); ce != nil {
		ce.Write(append(fields, zap.Int("step", n))...)
	}
}

// SID returns the field every role uses to name a student ID.
func SID(sid string) zap.Field { return zap.String("sid", sid) }

func stepMessage(n int, msg string) string {
	return fmt.Sprintf("STEP %d: %s", n, msg)
}
