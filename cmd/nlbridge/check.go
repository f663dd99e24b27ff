package main

import (
	"flag"
	"fmt"
	"io"
)

// checkCmd runs "nlbridge check": like "nats-server -t", it reads the
// configuration as "nlbridge run" does, the file and then the NLBRIDGE_
// environment variables, and validates it without touching netlink or NATS.
// A valid configuration is printed in full, defaults included and secrets
// redacted, with exit status 0; an invalid one is reported with status 2.
func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nlbridge check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration `file` (default: none, only the environment and the defaults)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: nlbridge check [--config FILE]

Reads and validates the configuration as "nlbridge run" would: the file, then
the environment variables NLBRIDGE_<KEY> (such as NLBRIDGE_NATS_SERVERS for
nats.servers), which override it. Prints the configuration in effect as YAML,
every key with its value or default, secrets redacted, and exits 0; exits 2
if the configuration is invalid. Neither netlink nor NATS is touched, and
files named in the configuration (credentials, certificates) are not read.

`)
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	cfg, err := loadBridgeConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "nlbridge: %v\n", err)
		return 2
	}
	if _, err := stdout.Write(cfg.YAML()); err != nil {
		fmt.Fprintf(stderr, "nlbridge check: %v\n", err)
		return 1
	}
	return 0
}
