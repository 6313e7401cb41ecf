package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// usageError marks a mistake in how pkiboard was invoked (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// commandUsagef is usagef for a mistake in an operator command's flags: the
// error names the command and ends with where its command line is described.
func commandUsagef(c *cli.Context, format string, args ...any) error {
	return usageError{fmt.Errorf("%s: %w (%s)", c.Command.Name, fmt.Errorf(format, args...), helpHint(c))}
}

// helpHint is the sentence a usage error ends with: where the right command
// line is described.
func helpHint(c *cli.Context) string {
	if c.Command != nil && c.Command.HelpName != "" && c.Command.HelpName != c.App.Name {
		return "see " + c.Command.HelpName + " --help"
	}
	return "see pkiboard --help"
}

// onUsageError turns urfave/cli's flag-parsing errors (an unknown flag, a
// flag without its value, a value that does not parse) into usage errors
// that say where the right command line is described.
func onUsageError(c *cli.Context, err error, isSubcommand bool) error {
	if isSubcommand {
		return usageError{fmt.Errorf("%s: %w (%s)", c.Command.Name, err, helpHint(c))}
	}
	return usageError{fmt.Errorf("%w (%s)", err, helpHint(c))}
}

// checkCommands fits every operator command with the checks of its command
// line that urfave/cli leaves out or reports as a failure of the work (exit
// status 1) rather than a mistake (2):
//   - a flag given before the command's name that the command does not take
//     (pkiboard --board-addr X certs) is refused, not ignored;
//   - a command that takes no arguments (ArgsUsage is empty) refuses them;
//   - a missing required flag is a usage error: urfave/cli's own check
//     prints the whole help and exits 1, so the flags' Required is taken
//     over here and checked in Before;
//   - every flag-parsing error is a usage error (onUsageError).
func checkCommands(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		required := prepareFlags(cmd.Flags)
		cmd.HideHelpCommand = true
		cmd.OnUsageError = onUsageError
		cmd.Before = func(c *cli.Context) error {
			return checkCommandLine(c, cmd, required)
		}
	}
	return cmds
}

// checkCommandLine is the Before of every operator command (checkCommands).
func checkCommandLine(c *cli.Context, cmd *cli.Command, required []string) error {
	if lineage := c.Lineage(); len(lineage) > 1 {
		for _, name := range lineage[1].LocalFlagNames() {
			if !takesFlag(cmd, name) {
				return usagef("%s: --%s does not apply to it (%s)", cmd.Name, name, helpHint(c))
			}
		}
	}
	if cmd.ArgsUsage == "" && c.NArg() > 0 {
		return usagef("%s takes no arguments, only flags: %q is not one (%s)", cmd.Name, c.Args().First(), helpHint(c))
	}
	var missing []string
	for _, name := range required {
		if _, ok := lookupFlag(c, name); !ok {
			missing = append(missing, "--"+name)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return usagef("%s needs %s (%s)", cmd.Name, missing[0], helpHint(c))
	}
	return usagef("%s needs %s and %s (%s)", cmd.Name,
		strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1], helpHint(c))
}

// takesFlag reports whether cmd declares the flag name.
func takesFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// prepareFlags returns the names of the flags marked Required, and unmarks
// them (saying "required" in their usage instead), so that checkCommandLine
// checks them rather than urfave/cli. It also keeps a switch's help from
// saying "(default: false)".
func prepareFlags(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		switch f := f.(type) {
		case *cli.BoolFlag:
			f.DisableDefaultText = true
		case *cli.StringFlag:
			if f.Required {
				f.Required, f.Usage = false, f.Usage+" (required)"
				names = append(names, f.Name)
			}
		case *cli.IntFlag:
			if f.Required {
				f.Required, f.Usage = false, f.Usage+" (required)"
				names = append(names, f.Name)
			}
		default:
			if r, ok := f.(cli.RequiredFlag); ok && r.IsRequired() {
				panic(fmt.Sprintf("prepareFlags: required %T --%s is not handled", f, f.Names()[0]))
			}
		}
	}
	return names
}
