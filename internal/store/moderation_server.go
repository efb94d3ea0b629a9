//go:build !cgichat_sqlite_only

package store

// deleteCommits marks MySQL's delete statement, CALL delete_message, as
// one that commits by itself (see selfCommitting).
func (*mysqlBackend) deleteCommits() {}
