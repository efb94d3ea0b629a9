// Command stream sends a room's chat messages as Server-Sent Events:
// GET cgi-bin/stream?room=R. It runs under CGI, FastCGI or as a FastCGI
// daemon; run it with -h for how.
package main

import (
	"os"

	"cgichat/internal/hosting"
	"cgichat/internal/web"
)

func main() {
	os.Exit(hosting.Main(web.Stream, os.Args[1:]))
}
