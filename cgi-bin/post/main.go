// Command post receives chat messages: POST cgi-bin/post stores one and
// answers 201 with it. It runs under CGI, FastCGI or as a FastCGI daemon;
// run it with -h for how.
package main

import (
	"os"

	"cgichat/internal/hosting"
	"cgichat/internal/web"
)

func main() {
	os.Exit(hosting.Main(web.Post, os.Args[1:]))
}
