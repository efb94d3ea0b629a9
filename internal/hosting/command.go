package hosting

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"cgichat/internal/config"
)

// Command is a task a person runs a program for by hand, over SSH, rather
// than a web server: a flag that takes one value, such as
// post -moderator-key LABEL. It never runs under CGI, where the
// environment decides the mode before any argument is read.
type Command struct {
	Flag    string // the flag's name, without the dash
	Arg     string // what its value is, for the usage text: LABEL
	Summary string // what it does, for the usage text
	// Run does the task with the settings the program serves with here
	// and writes its result for the person to out; an error it returns
	// is printed on stderr.
	Run func(ctx context.Context, arg string, cfg config.Config, out io.Writer) error
}

// commandFlags defines p's commands on fs and returns what runs the one
// the arguments name, once fs is parsed: its exit status, and whether a
// command was named at all.
func commandFlags(p Program, fs *flag.FlagSet) func(ctx context.Context) (code int, ran bool) {
	values := make([]*string, len(p.Commands))
	for i, c := range p.Commands {
		values[i] = fs.String(c.Flag, "", "")
	}
	return func(ctx context.Context) (int, bool) {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for i, c := range p.Commands {
			if given[c.Flag] {
				return runCommand(ctx, p, c, *values[i]), true
			}
		}
		return 0, false
	}
}

// runCommand runs c with the settings the program has when run by hand
// (the environment over the settings file beside it, as -check shows
// them) and returns the exit status: 0 when it succeeded, 1 when not.
func runCommand(ctx context.Context, p Program, c Command, arg string) int {
	cfg, err := localSettings()
	if err == nil {
		err = c.Run(ctx, arg, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s -%s: %v\n", p.Name, c.Flag, err)
		return 1
	}
	return 0
}

// commandUsage lists p's commands for its usage text.
func commandUsage(p Program) string {
	if len(p.Commands) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nCommands, run by hand (over SSH) with the settings the programs use here:\n")
	for _, c := range p.Commands {
		fmt.Fprintf(&b, "  %s -%s %s\n", p.Name, c.Flag, c.Arg)
		for _, line := range strings.Split(c.Summary, "\n") {
			fmt.Fprintf(&b, "      %s\n", line)
		}
	}
	return b.String()
}

// localSettings loads the settings of a run by hand: the environment over
// the settings file beside the program.
func localSettings() (config.Config, error) {
	file, err := config.ReadFile(filepath.Join(ProgramDir(), config.FileName))
	if err != nil {
		return config.Config{}, err
	}
	return config.Layers{Env: os.Getenv, File: file}.Load()
}
