//go:build race

package integration

// raceFlag builds the programs with the race detector when the tests run
// with it, so daemon-mode races show up too.
var raceFlag = []string{"-race"}

// raceEnv keeps the race runtime from sleeping a second at every exit,
// which would make each CGI request take a second.
var raceEnv = []string{"GORACE=atexit_sleep_ms=0"}
