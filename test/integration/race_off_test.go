//go:build !race

package integration

var raceFlag, raceEnv []string
