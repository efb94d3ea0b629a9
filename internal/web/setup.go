package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/hosting"
	"cgichat/internal/identity"
	"cgichat/internal/store"
)

// Moderator keys are made in one of two ways (docs/security.md): by a
// command over SSH, post -moderator-key LABEL, which prints the key; or,
// on a host with FTP only, from a set-up file the operator uploads, which
// names a label and a code of the operator's choosing. The page's login
// then takes that code once in place of a key: the programs make the key,
// remove the file and show the key this once. While no file is there,
// nothing but a key logs in.

// moderatorKeyCommand is post -moderator-key LABEL.
var moderatorKeyCommand = hosting.Command{
	Flag: "moderator-key",
	Arg:  "LABEL",
	Summary: "make a moderator key labelled LABEL and print it, this once (the database\n" +
		"keeps only its hash); revoke it with one line of SQL:\n" +
		"DELETE FROM moderator_keys WHERE label = 'LABEL';",
	Run: makeModeratorKey,
}

// makeModeratorKey makes a moderator key labelled label in cfg's database
// and prints it to out.
func makeModeratorKey(ctx context.Context, label string, cfg config.Config, out io.Writer) error {
	label, err := identity.ValidLabel(label)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DB, store.Options{NickKey: identity.Key})
	if err != nil {
		return err
	}
	defer st.Close()
	key, hash := identity.NewModeratorKey()
	if err := st.AddModeratorKey(ctx, label, hash, "by post -moderator-key"); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, `A moderator key for %s, shown this once (the database keeps only its hash):

    %s

Log in with it on the chat's page, once per browser. Revoke it with:
    DELETE FROM moderator_keys WHERE label = '%s';
`, label, key, label)
	return err
}

// SetupFileName is the name of the set-up file.
const SetupFileName = "moderator-setup.txt"

// SetupPath returns where the programs look for the set-up file: in the
// directory that holds the wake-up directory, which is the SQLite file's
// directory (~/cgichat-data by default), and for a database server
// ~/cgichat-data unless CHAT_WAKE_DIR puts the wake-ups elsewhere. The
// programs may write there, so they can remove the file once used.
func SetupPath(cfg config.Config) string {
	return filepath.Join(filepath.Dir(cfg.WakeDir), SetupFileName)
}

// MinSetupCode is the shortest code a set-up file may hold, in
// characters: every try of one counts against the rate limit on guesses,
// and the file works only until it is used.
const MinSetupCode = 12

// maxSetupFile bounds how much of a set-up file is read.
const maxSetupFile = 4096

// setupFile is what a set-up file says.
type setupFile struct {
	label, code string
}

// readSetup reads the set-up file at path: lines "label: NAME" and
// "code: CODE", blank lines and lines starting with # ignored, as any
// editor writes them (CRLF, a UTF-8 byte order mark). found is false when
// there is no file.
func readSetup(path string) (f setupFile, found bool, err error) {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, false, nil
	}
	if err != nil {
		return f, false, err
	}
	defer file.Close()
	b, err := io.ReadAll(io.LimitReader(file, maxSetupFile))
	if err != nil {
		return f, false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(bytes.TrimPrefix(b, []byte("\ufeff"))))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "label":
			f.label = strings.TrimSpace(value)
		case "code":
			f.code = strings.TrimSpace(value)
		}
	}
	return f, true, nil
}

// sameCode compares a code sent with the file's in constant time.
func sameCode(sent, want string) bool {
	a, b := sha256.Sum256([]byte(sent)), sha256.Sum256([]byte(want))
	return want != "" && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// setUp makes a moderator key from the set-up file if code is the file's
// code, removes the file, and returns the login's answer (with the key,
// shown this once) and the key's hash. ok is false when there is no file
// or code is not its code.
func (h *postHandler) setUp(c *actionCall, code string) (res loginResult, hash string, ok bool, err error) {
	path := SetupPath(c.cfg)
	f, found, err := readSetup(path)
	if err != nil {
		h.log.Warn("the moderator set-up file cannot be read", "path", path, "err", err)
		return res, "", false, nil
	}
	if !found || !sameCode(code, f.code) {
		return res, "", false, nil
	}
	// Only who knows the code gets this far: the answers may say what is
	// wrong with the file.
	if utf8.RuneCountInString(f.code) < MinSetupCode {
		return res, "", false, chat.Errorf(chat.EInvalid, "The code in %s is shorter than %d characters: write a longer one there and try again.", SetupFileName, MinSetupCode)
	}
	label, err := identity.ValidLabel(f.label)
	if err != nil {
		return res, "", false, chat.Errorf(chat.EInvalid, "%s needs a line \"label: NAME\": %s", SetupFileName, chat.ErrorMessage(err))
	}
	key, hash := identity.NewModeratorKey()
	// One key per label: a second use of the file, even at the same
	// moment, finds the label taken.
	if err := h.store.AddModeratorKey(c.r.Context(), label, hash, "from the set-up file"); err != nil {
		return res, "", false, err
	}
	h.log.Info("moderator key made from the set-up file", "label", label)
	res.Key = key
	if err := os.Remove(path); err != nil {
		h.log.Warn("the moderator set-up file cannot be removed", "path", path, "err", err)
		res.Warning = fmt.Sprintf("The programs could not remove %s: remove it yourself. While the key labelled %s exists, the file cannot make another.", SetupFileName, label)
	}
	res.Moderator = &label
	return res, hash, true, nil
}
