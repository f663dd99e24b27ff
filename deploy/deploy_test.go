package deploy_test

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/nlbridge/nlbridge/config"
)

// root is the module root, which holds the Dockerfile, .dockerignore and
// docker-compose.yml; the rest are in deploy/.
const root = ".."

// The files under test, relative to root.
const (
	dockerfileName = "Dockerfile"
	ignoreName     = ".dockerignore"
	composeName    = "docker-compose.yml"
	unitName       = "deploy/nlbridge.service"
	configName     = "deploy/nlbridge.yaml"
)

func TestDockerfile(t *testing.T) {
	report(t, checkDockerfile(root, readFile(t, dockerfileName)))
}

func TestDockerignore(t *testing.T) {
	report(t, checkDockerignore(root, readFile(t, ignoreName), readFile(t, dockerfileName)))
}

func TestCompose(t *testing.T) {
	report(t, checkCompose(root, readFile(t, composeName), readFile(t, dockerfileName)))
}

func TestSystemdUnit(t *testing.T) {
	report(t, checkUnit(root, readFile(t, unitName)))
}

// TestChecksCatch breaks each file in one way and expects the checks to say
// so, so that a check that can never fail does not pass unnoticed.
func TestChecksCatch(t *testing.T) {
	tests := []struct {
		file     string
		old, new string
		want     string // part of a problem
	}{
		{dockerfileName, "FROM gcr.io/distroless/static-debian12:nonroot\n", "", "want a multi-stage build"},
		{dockerfileName, "USER 65532:65532\n", "", "no USER"},
		{dockerfileName, "USER 65532:65532\n", "USER 0:0\n", "runs as root"},
		{dockerfileName, "USER 65532:65532\n", "USER 65532:65532\nUSER root\n", "runs as root"},
		{dockerfileName, "USER 65532:65532\n", "USER nonroot\n", "want a numeric"},
		{dockerfileName, "CGO_ENABLED=0 ", "CGO_ENABLED=1 ", "CGO_ENABLED=0"},
		{dockerfileName, "-trimpath ", "", "-trimpath"},
		{dockerfileName, "-X main.version=${VERSION}", "", "main.version"},
		{dockerfileName, "ARG VERSION=0.1.0-dev", "ARG VERSION=dev", "semantic version"},
		{dockerfileName, "-o /out/nlbridge", "-o /out/other", "copies nothing"},
		{dockerfileName, `CMD ["run", "--config", "/etc/nlbridge/nlbridge.yaml"]`, `CMD ["run", "--config", "/etc/nlbridge.yaml"]`, "not where"},
		{dockerfileName, `CMD ["run", "--config", "/etc/nlbridge/nlbridge.yaml"]`, `CMD ["run"]`, "no --config"},
		{dockerfileName, `ENTRYPOINT ["/nlbridge"]`, `ENTRYPOINT /nlbridge`, "exec form"},
		{dockerfileName, "COPY --chmod=0444 ", "COPY --chmod=0440 ", "cannot read"},
		{dockerfileName, "EXPOSE 9108", "EXPOSE 9100", "metrics"},
		{ignoreName, "\n.git\n", "\n", ".git"},
		{ignoreName, "\n.git\n", "\n.git\ndeploy/*.yaml\n", "deploy/nlbridge.yaml"},
		{ignoreName, "\n.git\n", "\n.git\n**/*.go\n", "cmd/nlbridge/main.go"},
		{composeName, "    network_mode: host\n", "    network_mode: bridge\n", "network_mode"},
		{composeName, `user: "65532:65532"`, `user: "0:0"`, "root"},
		{composeName, `user: "65532:65532"`, `user: root`, "root"},
		{composeName, "cap_drop: [ALL]", "cap_drop: [NET_RAW]", "cap_drop"},
		{composeName, "cap_drop: [ALL]", "cap_drop: [ALL]\n    cap_add: [NET_ADMIN]", "cap_add"},
		{composeName, "read_only: true", "read_only: false", "read_only"},
		{composeName, `security_opt: ["no-new-privileges:true"]`, "security_opt: []", "no-new-privileges"},
		{composeName, "depends_on:\n      - nats\n", "", "depends_on"},
		{composeName, "NLBRIDGE_NATS_SERVERS: nats://127.0.0.1:4222", "NLBRIDGE_NATS_SERVERS: nats://127.0.0.1:4223", "4223"},
		{composeName, "NLBRIDGE_NATS_SERVERS: nats://127.0.0.1:4222", "NLBRIDGE_NATS_SERVERS: nats://nats:4222", "loopback"},
		{composeName, "NLBRIDGE_NATS_SERVERS: nats://127.0.0.1:4222", "NLBRIDGE_NATS_SERVERS: http://127.0.0.1:4222", "NLBRIDGE_NATS_SERVERS"},
		{composeName, "NLBRIDGE_METRICS_LISTEN:", "NLBRIDGE_METRICS_LISTN:", "NLBRIDGE_METRICS_LISTN"},
		{composeName, `"127.0.0.1:4222:4222"`, `"4222:4222"`, "every address"},
		{composeName, `"--jetstream", `, "", "JetStream"},
		{composeName, `"--store_dir", "/data"`, `"--store_dir", "/js"`, "not on a volume"},
		{unitName, "DynamicUser=yes", "DynamicUser=no", "DynamicUser"},
		{unitName, "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_ADMIN\n", "CapabilityBoundingSet"},
		{unitName, "AmbientCapabilities=\n", "AmbientCapabilities=CAP_NET_ADMIN\n", "AmbientCapabilities"},
		{unitName, "NoNewPrivileges=yes", "NoNewPrivileges=no", "NoNewPrivileges"},
		{unitName, "ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem"},
		{unitName, "[Service]\n", "[Service]\nPrivateNetwork=yes\n", "PrivateNetwork"},
		{unitName, "RestrictAddressFamilies=AF_NETLINK ", "RestrictAddressFamilies=", "AF_NETLINK"},
		{unitName, "ExecStart=/usr/local/bin/nlbridge run --config /etc/nlbridge/nlbridge.yaml", "ExecStart=/usr/local/bin/nlbridge run --config /etc/nlbridge/other.yaml", "nlbridge.yaml"},
		{unitName, "ExecStart=/usr/local/bin/nlbridge run", "ExecStart=+/usr/local/bin/nlbridge run", "full privileges"},
		{unitName, "ExecStartPre=/usr/local/bin/nlbridge check --config /etc/nlbridge/nlbridge.yaml", "ExecStartPre=-/usr/local/bin/nlbridge check --config /etc/nlbridge/nlbridge.yaml", "ignores"},
		{unitName, "ExecStartPre=/usr/local/bin/nlbridge check --config /etc/nlbridge/nlbridge.yaml", "ExecStartPre=/usr/local/bin/nlbridge check --config /etc/nlbridge/x.yaml", "ExecStartPre"},
	}
	for _, tt := range tests {
		src := readFile(t, tt.file)
		if n := bytes.Count(src, []byte(tt.old)); n != 1 {
			t.Errorf("%s holds %q %d times, want once: update this test", tt.file, tt.old, n)
			continue
		}
		broken := bytes.Replace(src, []byte(tt.old), []byte(tt.new), 1)
		var got []string
		switch tt.file {
		case dockerfileName:
			got = checkDockerfile(root, broken)
		case ignoreName:
			got = checkDockerignore(root, broken, readFile(t, dockerfileName))
		case composeName:
			got = checkCompose(root, broken, readFile(t, dockerfileName))
		case unitName:
			got = checkUnit(root, broken)
		}
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
			t.Errorf("%s with %q as %q: got problems %q, want one mentioning %q", tt.file, tt.old, tt.new, got, tt.want)
		}
	}
}

// TestChecksCatchBadConfig checks that an invalid deploy/nlbridge.yaml fails
// every file that uses it.
func TestChecksCatchBadConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, configName), []byte("encoding: xml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]string{
		dockerfileName: checkDockerfile(dir, readFile(t, dockerfileName)),
		composeName:    checkCompose(dir, readFile(t, composeName), readFile(t, dockerfileName)),
		unitName:       checkUnit(dir, readFile(t, unitName)),
	} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, `"xml" is not one of`) }) {
			t.Errorf("%s with an invalid %s: got problems %q, want the config error", name, configName, got)
		}
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checks on the unit: unknown
// keys, bad values and the like. It runs on a copy whose Exec commands point
// at a stub, as /usr/local/bin/nlbridge need not exist here.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: skipping systemd's own check of " + unitName)
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "nlbridge")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := readFile(t, unitName)
	for _, cmd := range []string{"ExecStart", "ExecStartPre"} {
		for _, e := range parseUnit(src).entries("Service", cmd) {
			_, argv, err := execLine(e.value)
			if err != nil || len(argv) == 0 {
				continue // checkUnit reports it
			}
			src = bytes.ReplaceAll(src, []byte(argv[0]), []byte(stub))
		}
	}
	unit := filepath.Join(dir, filepath.Base(unitName))
	if err := os.WriteFile(unit, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("%s: systemd-analyze verify (on a copy with Exec commands running %s): %v\n%s", unitName, stub, err, out)
	}
}

// TestDockerBuildCommand runs the Dockerfile's go build here, with the
// build arguments' defaults, and checks that it gives a static binary that
// reports the version the Dockerfile sets, and whose "nlbridge check"
// accepts deploy/nlbridge.yaml alone (as the image and the systemd unit
// use it) and with docker-compose.yml's environment.
func TestDockerBuildCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nlbridge: skipped in -short mode")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is Linux; so is the binary this test builds and inspects")
	}
	stages, err := parseDockerfile(readFile(t, dockerfileName))
	if err != nil {
		t.Fatalf("%s: %v", dockerfileName, err)
	}
	b, err := findGoBuild(stages)
	if err != nil {
		t.Fatalf("%s: %v", dockerfileName, err)
	}
	bin := filepath.Join(t.TempDir(), "nlbridge")
	args := []string{"build"}
	for _, f := range b.flags {
		switch {
		case f.name == "o":
			args = append(args, "-o="+bin)
		case f.hasValue:
			args = append(args, "-"+f.name+"="+f.value)
		default:
			args = append(args, "-"+f.name)
		}
	}
	args = append(args, b.packages...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	for k, v := range b.env {
		if v != "" { // GOOS and GOARCH come from build arguments empty here
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s:%d: go %s: %v\n%s", dockerfileName, b.inst.line, strings.Join(args, " "), err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s:%d: the binary has a program interpreter: it is not static, and distroless/static has no libc", dockerfileName, b.inst.line)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s:%d: the binary needs shared libraries %v; want a static binary", dockerfileName, b.inst.line, libs)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if want := "nlbridge " + b.stage.vars["VERSION"] + "\n"; err != nil || string(out) != want {
		t.Errorf("%s:%d: the binary built as in the image: nlbridge version: %v, output %q; want %q", dockerfileName, b.inst.line, err, out, want)
	}

	var c composeFile
	if err := yaml.Unmarshal(readFile(t, composeName), &c); err != nil {
		t.Fatalf("%s: %v", composeName, err)
	}
	var composeEnv []string
	for _, v := range c.Services["nlbridge"].Environment {
		composeEnv = append(composeEnv, v.name+"="+v.value)
	}
	for _, env := range [][]string{nil, composeEnv} {
		cmd := exec.Command(bin, "check", "--config", filepath.Join(root, configName))
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "NLBRIDGE_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("nlbridge check --config %s with environment %q: %v\n%s", configName, env, err, stderr.Bytes())
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b ", []string{"a", "b"}},
		{`go build -ldflags "-s -w -X main.version=${VERSION}" ./cmd`, []string{"go", "build", "-ldflags", "-s -w -X main.version=${VERSION}", "./cmd"}},
		{`a 'b "c' "d \"e\" \$f" g\ h`, []string{"a", `b "c`, `d "e" \$f`, "g h"}},
		{`x "" y`, []string{"x", "", "y"}},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := splitWords(`a "b`); err == nil {
		t.Errorf(`splitWords("a \"b") succeeded; want an error for the open quote`)
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in   string
		want port
	}{
		{"4222", port{target: "4222"}},
		{"4223:4222", port{published: "4223", target: "4222"}},
		{"127.0.0.1:4223:4222/tcp", port{hostIP: "127.0.0.1", published: "4223", target: "4222"}},
		{"[::1]:4222:4222", port{hostIP: "::1", published: "4222", target: "4222"}},
		{"127.0.0.1::4222", port{hostIP: "127.0.0.1", target: "4222"}},
	}
	for _, tt := range tests {
		if got := parsePort(tt.in); got != tt.want {
			t.Errorf("parsePort(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
}

func TestIgnoreMatch(t *testing.T) {
	patterns := parseIgnore([]byte("# comment\n.git\n**/*.test\n/docs\ndeploy/*.env\n!deploy/keep.env\n"))
	tests := []struct {
		path string
		want bool
	}{
		{".git", true},
		{".git/config", true},
		{"a.test", true},
		{"source/source.test", true},
		{"docs/x.md", true},
		{"deploy/nlbridge.env", true},
		{"deploy/keep.env", false},
		{"deploy/nlbridge.yaml", false},
		{"cmd/nlbridge/main.go", false},
		{"x/.git", false},
	}
	for _, tt := range tests {
		if got := ignored(patterns, tt.path); got != tt.want {
			t.Errorf("ignored(%q) = %v; want %v", tt.path, got, tt.want)
		}
	}
}

// report fails t with each problem.
func report(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problems collects what is wrong with one file, each prefixed with the
// file's name.
type problems struct {
	file string
	list []string
}

func (p *problems) add(line int, format string, args ...any) {
	at := p.file
	if line > 0 {
		at += ":" + strconv.Itoa(line)
	}
	p.list = append(p.list, at+": "+fmt.Sprintf(format, args...))
}

// readConfig reads a configuration as nlbridge does: the file at name
// (relative to dir) with the environment's NLBRIDGE_* overrides.
func readConfig(dir, name string, environ []string) (config.Config, error) {
	return config.Read(filepath.Join(dir, name), environ)
}

// runArgs finds the subcommand and --config file in nlbridge's arguments
// (after the program name), as nlbridge's main parses them: the first
// argument is the subcommand unless it is a flag, and "run" is the default.
func runArgs(args []string) (sub, cfg string, ok bool) {
	sub = "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		sub, args = args[0], args[1:]
	}
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return sub, value, true
		}
		if i+1 < len(args) {
			return sub, args[i+1], true
		}
	}
	return sub, "", false
}

// nlbridgeVars returns the NLBRIDGE_* variables of an environment, sorted.
func nlbridgeVars(environ []string) []string {
	var vars []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, "NLBRIDGE_") {
			vars = append(vars, kv)
		}
	}
	slices.Sort(vars)
	return vars
}

// ---- Dockerfile ----

// An instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line  int               // where it starts
	cmd   string            // upper case: FROM, RUN, COPY…
	flags map[string]string // the --name=value flags before its arguments
	rest  string            // its arguments after the flags, as written
	exec  []string          // rest as a JSON array (the exec form), or nil
}

// A stage is one FROM and the instructions up to the next.
type stage struct {
	index int
	name  string // the AS name, or "" for none
	image string // expanded
	from  instruction
	insts []instruction
	vars  map[string]string // ARG defaults and ENV values, in effect at the end
	env   map[string]string // ENV values only
}

// ref reports whether s is the stage --from=name names.
func (s *stage) ref(name string) bool {
	return name == s.name || name == strconv.Itoa(s.index)
}

func (s *stage) expand(v string) string {
	return os.Expand(v, func(k string) string { return s.vars[k] })
}

// parseDockerfile splits a Dockerfile into stages. It knows the default
// escape character only, and no heredocs.
func parseDockerfile(src []byte) ([]stage, error) {
	insts, err := instructions(src)
	if err != nil {
		return nil, err
	}
	global := map[string]string{} // ARGs before the first FROM
	var stages []stage
	for _, in := range insts {
		if in.cmd == "FROM" {
			words := strings.Fields(in.rest)
			if len(words) == 0 {
				return nil, fmt.Errorf("line %d: FROM without an image", in.line)
			}
			s := stage{index: len(stages), from: in, vars: map[string]string{}, env: map[string]string{}}
			s.image = os.Expand(words[0], func(k string) string { return global[k] })
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				k, v, _ := strings.Cut(in.rest, "=")
				global[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
				continue
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		s := &stages[len(stages)-1]
		s.insts = append(s.insts, in)
		switch in.cmd {
		case "ARG":
			for _, w := range strings.Fields(in.rest) {
				k, v, hasDefault := strings.Cut(w, "=")
				if !hasDefault {
					v = global[k]
				}
				s.vars[k] = strings.Trim(v, `"`)
			}
		case "ENV":
			words, err := splitWords(in.rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", in.line, err)
			}
			if len(words) > 0 && !strings.Contains(words[0], "=") { // ENV KEY value
				words = []string{words[0] + "=" + strings.Join(words[1:], " ")}
			}
			for _, w := range words {
				k, v, _ := strings.Cut(w, "=")
				v = s.expand(v)
				s.vars[k], s.env[k] = v, v
			}
		}
	}
	return stages, nil
}

// instructions reads a Dockerfile's instructions: comments dropped (also
// inside continued instructions), lines ending in '\' joined to the next.
func instructions(src []byte) ([]instruction, error) {
	var insts []instruction
	var cur *instruction
	lines := strings.Split(string(src), "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || cur == nil && trimmed == "" {
			continue
		}
		if cur == nil {
			insts = append(insts, instruction{line: i + 1})
			cur = &insts[len(insts)-1]
		}
		if body, more := strings.CutSuffix(strings.TrimRight(line, " \t\r"), `\`); more {
			cur.rest += body
			continue
		}
		cur.rest += line
		cur = nil
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: the last instruction ends with a continuation", cur.line)
	}
	for i := range insts {
		in := &insts[i]
		cmd, rest, _ := strings.Cut(strings.TrimSpace(in.rest), " ")
		in.cmd, in.rest, in.flags = strings.ToUpper(cmd), strings.TrimSpace(rest), map[string]string{}
		for strings.HasPrefix(in.rest, "--") {
			flag, after, _ := strings.Cut(in.rest, " ")
			name, value, _ := strings.Cut(flag[2:], "=")
			in.flags[name] = value
			in.rest = strings.TrimSpace(after)
		}
		if strings.HasPrefix(in.rest, "[") {
			var exec []string
			if err := json.Unmarshal([]byte(in.rest), &exec); err == nil {
				in.exec = exec
			}
		}
	}
	return insts, nil
}

// copies reports where a COPY instruction puts the file src (a path in the
// build context or the stage copied from).
func copies(in instruction, workdir, src string) (dest string, ok bool) {
	words := in.exec
	if words == nil {
		words = strings.Fields(in.rest)
	}
	if len(words) < 2 {
		return "", false
	}
	srcs, dst := words[:len(words)-1], words[len(words)-1]
	if !slices.ContainsFunc(srcs, func(s string) bool { return path.Clean(s) == path.Clean(src) }) {
		return "", false
	}
	if !path.IsAbs(dst) {
		dst = path.Join(workdir, dst)
	}
	if strings.HasSuffix(words[len(words)-1], "/") || len(srcs) > 1 {
		return path.Join(dst, path.Base(src)), true
	}
	return path.Clean(dst), true
}

// imageFile finds the final stage's COPY that puts a file from the build
// context at dest.
func imageFile(final *stage, dest string) (src string, ok bool) {
	workdir := "/"
	for _, in := range final.insts {
		switch in.cmd {
		case "WORKDIR":
			workdir = path.Join(workdir, final.expand(in.rest))
		case "COPY", "ADD":
			if in.flags["from"] != "" {
				continue
			}
			words := in.exec
			if words == nil {
				words = strings.Fields(in.rest)
			}
			for _, s := range words[:max(len(words)-1, 0)] {
				if d, ok := copies(in, workdir, s); ok && d == dest {
					return path.Clean(s), true
				}
			}
		}
	}
	return "", false
}

// A goBuild is the go build command a RUN instruction runs.
type goBuild struct {
	stage    *stage
	inst     instruction
	env      map[string]string // the command's assignments and the stage's ENV, expanded
	flags    []goFlag          // expanded
	packages []string
}

type goFlag struct {
	name, value string
	hasValue    bool // false for a boolean flag such as -trimpath
}

func (b goBuild) flag(name string) (string, bool) {
	for _, f := range b.flags {
		if f.name == name {
			return f.value, true
		}
	}
	return "", false
}

// goValueFlags are the go build flags that take a value.
var goValueFlags = []string{"C", "asmflags", "buildmode", "compiler", "gccgoflags", "gcflags", "installsuffix",
	"ldflags", "mod", "modfile", "o", "overlay", "p", "pgo", "pkgdir", "tags", "toolexec"}

// assignment is a shell variable assignment word.
var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// findGoBuild finds the one "go build" in the Dockerfile's RUN instructions,
// with simple commands split at separate &&, ||, ; and | words.
func findGoBuild(stages []stage) (goBuild, error) {
	var found []goBuild
	for i := range stages {
		s := &stages[i]
		for _, in := range s.insts {
			if in.cmd != "RUN" {
				continue
			}
			words := in.exec
			if words == nil {
				var err error
				if words, err = splitWords(in.rest); err != nil {
					return goBuild{}, fmt.Errorf("line %d: %v", in.line, err)
				}
			}
			for cmd := range splitCommands(words) {
				b := goBuild{stage: s, inst: in, env: map[string]string{}}
				for k, v := range s.env {
					b.env[k] = v
				}
				for len(cmd) > 0 && assignment.MatchString(cmd[0]) {
					k, v, _ := strings.Cut(cmd[0], "=")
					b.env[k], cmd = s.expand(v), cmd[1:]
				}
				if len(cmd) < 2 || path.Base(cmd[0]) != "go" || cmd[1] != "build" {
					continue
				}
				args := cmd[2:]
				for j := 0; j < len(args); j++ {
					a := s.expand(args[j])
					if !strings.HasPrefix(a, "-") {
						b.packages = append(b.packages, a)
						continue
					}
					name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
					if !hasValue && slices.Contains(goValueFlags, name) && j+1 < len(args) {
						j++
						value, hasValue = s.expand(args[j]), true
					}
					b.flags = append(b.flags, goFlag{name, value, hasValue})
				}
				found = append(found, b)
			}
		}
	}
	switch len(found) {
	case 0:
		return goBuild{}, errors.New("no RUN instruction runs go build")
	case 1:
		return found[0], nil
	}
	return goBuild{}, fmt.Errorf("lines %d and %d both run go build; want one", found[0].inst.line, found[1].inst.line)
}

// splitCommands yields the simple commands of a shell command line.
func splitCommands(words []string) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		start := 0
		for i := 0; i <= len(words); i++ {
			if i < len(words) && !slices.Contains([]string{"&&", "||", ";", "|"}, words[i]) {
				continue
			}
			if i > start && !yield(words[start:i]) {
				return
			}
			start = i + 1
		}
	}
}

var semver = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// image is what a Dockerfile says about the image it builds.
type image struct {
	argv       []string // ENTRYPOINT and CMD
	binary     string   // argv[0], the nlbridge binary's path in the image
	configPath string   // the --config of CMD
}

// checkDockerfile checks the Dockerfile src; deploy/nlbridge.yaml is read
// from dir.
func checkDockerfile(dir string, src []byte) []string {
	p := &problems{file: dockerfileName}
	stages, err := parseDockerfile(src)
	if err != nil {
		p.add(0, "%v", err)
		return p.list
	}
	if len(stages) < 2 {
		p.add(0, "%d FROM instructions: want a multi-stage build, the binary built in one stage and copied into a minimal final one", len(stages))
		return p.list
	}
	final := &stages[len(stages)-1]
	if strings.HasPrefix(path.Base(final.image), "golang") {
		p.add(final.from.line, "the final stage is the Go image %s; want a minimal one such as distroless/static", final.image)
	}

	// It runs as a numeric non-root user: with a name, the runtime cannot
	// tell it is not root without reading the image's /etc/passwd.
	var user instruction
	for _, in := range final.insts {
		if in.cmd == "USER" {
			user = in
		}
	}
	uid := -1
	if user.cmd == "" {
		p.add(final.from.line, "the final stage has no USER: it runs as whatever user %s sets; want USER 65532:65532", final.image)
	} else {
		u, g, _ := strings.Cut(final.expand(user.rest), ":")
		if isRoot(u) || g != "" && isRoot(g) {
			p.add(user.line, "the image runs as root (USER %s); want a non-zero uid and gid such as 65532:65532", user.rest)
		} else if n, err := strconv.Atoi(u); err != nil || g != "" && !isNumber(g) {
			p.add(user.line, "USER %s: want a numeric uid:gid such as 65532:65532, so that runtimes can tell it is not root", user.rest)
		} else {
			uid = n
		}
	}

	// The binary is built static by the one go build, and copied in.
	b, err := findGoBuild(stages)
	if err != nil {
		p.add(0, "%v", err)
		return p.list
	}
	if b.env["CGO_ENABLED"] != "0" {
		p.add(b.inst.line, "go build runs without CGO_ENABLED=0: the binary may need libc, which the final image lacks")
	}
	if _, ok := b.flag("trimpath"); !ok {
		p.add(b.inst.line, "go build without -trimpath: the binary would hold the builder's paths")
	}
	ldflags, _ := b.flag("ldflags")
	ld := strings.Fields(ldflags)
	if !slices.Contains(ld, "-s") || !slices.Contains(ld, "-w") {
		p.add(b.inst.line, "go build -ldflags %q: want -s -w, to drop the symbol table and DWARF", ldflags)
	}
	if i := slices.Index(ld, "-X"); i < 0 || i+1 == len(ld) || !strings.HasPrefix(ld[i+1], "main.version=") {
		p.add(b.inst.line, "go build -ldflags %q: want -X main.version=${VERSION}", ldflags)
	} else if v := strings.TrimPrefix(ld[i+1], "main.version="); !semver.MatchString(v) {
		p.add(b.inst.line, "main.version is %q with the build arguments' defaults; want a semantic version (the NATS micro service rejects others), such as ARG VERSION=0.1.0-dev", v)
	}
	if !slices.Equal(b.packages, []string{"./cmd/nlbridge"}) {
		p.add(b.inst.line, "go build builds %q; want ./cmd/nlbridge", b.packages)
	}
	out, _ := b.flag("o")
	if !path.IsAbs(out) {
		p.add(b.inst.line, "go build -o %q: want an absolute path, for the final stage's COPY --from", out)
	}

	img, ok := dockerImage(p, final)
	if !ok {
		return p.list
	}
	var binaryCopied bool
	for _, in := range final.insts {
		if in.cmd == "COPY" && b.stage.ref(in.flags["from"]) {
			if d, ok := copies(in, "/", out); ok && d == img.binary {
				binaryCopied = true
			}
		}
	}
	if !binaryCopied {
		p.add(b.inst.line, "the final stage copies nothing from %s (the go build -o output) to %s, which ENTRYPOINT runs", out, img.binary)
	}

	// The config CMD names is deploy/nlbridge.yaml, readable by USER, valid.
	dest, cp := "", instruction{}
	for _, in := range final.insts {
		if in.cmd == "COPY" && in.flags["from"] == "" {
			if d, ok := copies(in, "/", configName); ok {
				dest, cp = d, in
			}
		}
	}
	switch {
	case dest == "":
		p.add(0, "the final stage does not copy %s", configName)
	case img.configPath == "":
	case dest != img.configPath:
		p.add(cp.line, "%s is copied to %s, not where CMD's --config points (%s)", configName, dest, img.configPath)
	default:
		if !readableBy(dir, cp, configName, uid) {
			p.add(cp.line, "USER %s cannot read %s: it is owned by root; give it --chmod=0444", user.rest, dest)
		}
		cfg, err := readConfig(dir, configName, mapEnv(final.env))
		if err != nil {
			p.add(cp.line, "the image's config, %s with the ENV NLBRIDGE_* variables %q: %v", configName, nlbridgeVars(mapEnv(final.env)), err)
		} else {
			checkExpose(p, final, cfg)
		}
	}
	return p.list
}

// dockerImage reads the final stage's ENTRYPOINT and CMD.
func dockerImage(p *problems, final *stage) (image, bool) {
	var entry, cmd instruction
	for _, in := range final.insts {
		switch in.cmd {
		case "ENTRYPOINT":
			entry = in
		case "CMD":
			cmd = in
		}
	}
	for _, in := range []instruction{entry, cmd} {
		if in.cmd != "" && in.exec == nil {
			p.add(in.line, "%s %s: want the exec form, [\"…\"]: the shell form needs /bin/sh, which the final image lacks", in.cmd, in.rest)
			return image{}, false
		}
	}
	if len(entry.exec) == 0 {
		p.add(0, "the final stage has no ENTRYPOINT; want [\"/nlbridge\"]")
		return image{}, false
	}
	img := image{argv: append(slices.Clone(entry.exec), cmd.exec...), binary: entry.exec[0]}
	sub, cfg, ok := runArgs(img.argv[1:])
	switch {
	case sub != "run":
		p.add(cmd.line, "the image runs nlbridge %s; want run --config FILE", sub)
	case !ok:
		p.add(cmd.line, "the image runs %q with no --config; want run --config /etc/nlbridge/nlbridge.yaml", img.argv)
	default:
		img.configPath = path.Clean(cfg)
	}
	return img, true
}

// checkExpose checks that EXPOSE names the metrics port.
func checkExpose(p *problems, final *stage, cfg config.Config) {
	_, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		return // metrics off
	}
	for _, in := range final.insts {
		if in.cmd == "EXPOSE" && slices.ContainsFunc(strings.Fields(in.rest), func(w string) bool {
			return strings.TrimSuffix(w, "/tcp") == port
		}) {
			return
		}
	}
	p.add(0, "no EXPOSE %s: the image's config serves metrics on %s", port, cfg.Metrics.Listen)
}

// readableBy reports whether uid can read the file a COPY puts in the image:
// it is owned by --chown, or else by root, with --chmod or else the mode the
// file has in the build context.
func readableBy(dir string, in instruction, src string, uid int) bool {
	mode := fs.FileMode(0)
	if m, ok := in.flags["chmod"]; ok {
		n, err := strconv.ParseUint(m, 8, 32)
		if err != nil {
			return false
		}
		mode = fs.FileMode(n)
	} else if st, err := os.Stat(filepath.Join(dir, src)); err == nil {
		mode = st.Mode().Perm()
	}
	owner, _, _ := strings.Cut(in.flags["chown"], ":")
	if owner != "" && owner == strconv.Itoa(uid) {
		return mode&0o400 != 0
	}
	return mode&0o004 != 0
}

func isRoot(id string) bool { return id == "0" || id == "root" }

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func mapEnv(m map[string]string) []string {
	var env []string
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// ---- .dockerignore ----

// An ignorePattern is one line of a .dockerignore.
type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
}

// parseIgnore reads a .dockerignore as Docker does: patterns are cleaned
// paths relative to the context, '*' and '?' do not cross '/', '**' does,
// '!' re-includes, and the last matching pattern wins.
func parseIgnore(src []byte) []ignorePattern {
	var ps []ignorePattern
	for line := range strings.SplitSeq(string(src), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var p ignorePattern
		if line, p.negate = strings.CutPrefix(line, "!"); p.negate {
			line = strings.TrimSpace(line)
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		p.re = regexp.MustCompile(re.String())
		ps = append(ps, p)
	}
	return ps
}

// ignored reports whether the patterns leave name (slash-separated,
// relative to the context) out of the build context: a pattern matches a
// path or any directory above it.
func ignored(ps []ignorePattern, name string) bool {
	out := false
	for _, p := range ps {
		for prefix := name; prefix != "."; prefix = path.Dir(prefix) {
			if p.re.MatchString(prefix) {
				out = !p.negate
				break
			}
		}
	}
	return out
}

var embedLine = regexp.MustCompile(`(?m)^//go:embed (.+)$`)

// checkDockerignore checks that the .dockerignore src keeps .git out of
// the build context and everything the build needs in: go.mod, go.sum, the
// non-test Go files, the files they embed, and what the Dockerfile copies
// from the context.
func checkDockerignore(dir string, src, dockerfile []byte) []string {
	p := &problems{file: ignoreName}
	ps := parseIgnore(src)
	if !ignored(ps, ".git/config") {
		p.add(0, ".git is sent to the Docker daemon: want it ignored")
	}
	need := []string{"go.mod", "go.sum"}
	err := filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, name)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		need = append(need, rel)
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		for _, m := range embedLine.FindAllSubmatch(b, -1) {
			for _, pat := range strings.Fields(string(m[1])) {
				files, _ := filepath.Glob(filepath.Join(filepath.Dir(name), pat))
				for _, f := range files {
					r, _ := filepath.Rel(dir, f)
					need = append(need, filepath.ToSlash(r))
				}
			}
		}
		return nil
	})
	if err != nil {
		p.add(0, "%v", err)
	}
	if stages, err := parseDockerfile(dockerfile); err == nil {
		for _, s := range stages {
			for _, in := range s.insts {
				if (in.cmd == "COPY" || in.cmd == "ADD") && in.flags["from"] == "" {
					words := strings.Fields(in.rest)
					for _, w := range words[:max(len(words)-1, 0)] {
						if w = path.Clean(w); w != "." {
							need = append(need, w)
						}
					}
				}
			}
		}
	}
	for _, name := range need {
		if ignored(ps, name) {
			p.add(0, "%s is left out of the build context, but the build needs it", name)
		}
	}
	return p.list
}

// ---- docker-compose.yml ----

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string      `yaml:"image"`
	Build       build       `yaml:"build"`
	Command     commandLine `yaml:"command"`
	Entrypoint  commandLine `yaml:"entrypoint"`
	NetworkMode string      `yaml:"network_mode"`
	User        string      `yaml:"user"`
	Privileged  bool        `yaml:"privileged"`
	CapAdd      []string    `yaml:"cap_add"`
	CapDrop     []string    `yaml:"cap_drop"`
	ReadOnly    bool        `yaml:"read_only"`
	SecurityOpt []string    `yaml:"security_opt"`
	Environment environment `yaml:"environment"`
	EnvFile     commandLine `yaml:"env_file"`
	Volumes     []mount     `yaml:"volumes"`
	Ports       []port      `yaml:"ports"`
	DependsOn   dependsOn   `yaml:"depends_on"`
}

// build is a service's build: a context path or a mapping.
type build struct {
	set                 bool
	context, dockerfile string
}

func (b *build) UnmarshalYAML(n *yaml.Node) error {
	b.set = true
	if n.Kind == yaml.ScalarNode {
		b.context = n.Value
		return nil
	}
	var m struct{ Context, Dockerfile string }
	if err := n.Decode(&m); err != nil {
		return err
	}
	b.context, b.dockerfile = m.Context, m.Dockerfile
	return nil
}

// commandLine is a command as a list, or as a string compose splits into
// words as a shell would.
type commandLine []string

func (c *commandLine) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		words, err := splitWords(n.Value)
		*c = words
		return err
	}
	return n.Decode((*[]string)(c))
}

// environment is a service's variables, from a mapping or a list of
// NAME=value; a variable with no value passes the one compose runs with.
type environment []envVar

type envVar struct {
	name, value string
	hasValue    bool
	line        int
}

func (e *environment) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			*e = append(*e, envVar{k.Value, v.Value, v.ShortTag() != "!!null", k.Line})
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			name, value, hasValue := strings.Cut(item.Value, "=")
			*e = append(*e, envVar{name, value, hasValue, item.Line})
		}
	default:
		return fmt.Errorf("line %d: environment: want a mapping or a list", n.Line)
	}
	return nil
}

// mount is a volume or bind mount.
type mount struct{ source, target string }

func (m *mount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) == 1 {
			m.target = parts[0]
		} else {
			m.source, m.target = parts[0], parts[1]
		}
		return nil
	}
	var long struct{ Source, Target string }
	err := n.Decode(&long)
	m.source, m.target = long.Source, long.Target
	return err
}

// port is a published port; published is "" when the host picks one.
type port struct{ hostIP, published, target string }

func (p *port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*p = parsePort(n.Value)
		return nil
	}
	var long struct {
		Target    string `yaml:"target"`
		Published string `yaml:"published"`
		HostIP    string `yaml:"host_ip"`
	}
	err := n.Decode(&long)
	*p = port{long.HostIP, long.Published, long.Target}
	return err
}

// parsePort parses compose's short syntax, [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL].
func parsePort(s string) port {
	s, _, _ = strings.Cut(s, "/")
	var p port
	i := strings.LastIndex(s, ":")
	if i < 0 {
		p.target = s
		return p
	}
	s, p.target = s[:i], s[i+1:]
	if i = strings.LastIndex(s, ":"); i < 0 {
		p.published = s
		return p
	}
	p.hostIP, p.published = strings.Trim(s[:i], "[]"), s[i+1:]
	return p
}

// dependsOn is the names of the services one depends on, from a list or a
// mapping.
type dependsOn []string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			*d = append(*d, n.Content[i].Value)
		}
		return nil
	}
	return n.Decode((*[]string)(d))
}

// checkCompose checks the docker-compose.yml src, with the Dockerfile
// dockerfile its nlbridge service builds; files it mounts are read from dir.
func checkCompose(dir string, src, dockerfile []byte) []string {
	p := &problems{file: composeName}
	var c composeFile
	if err := yaml.Unmarshal(src, &c); err != nil {
		p.add(0, "%v", err)
		return p.list
	}
	nats, okNATS := c.Services["nats"]
	nl, okNL := c.Services["nlbridge"]
	if !okNATS || !okNL {
		p.add(0, "services %q: want nats and nlbridge", slices.Sorted(maps.Keys(c.Services)))
		return p.list
	}
	clientPort := checkNATSService(p, c, nats)

	// nlbridge watches the host's namespace, with no privileges.
	if nl.NetworkMode != "host" {
		p.add(0, "nlbridge: network_mode %q: want host, so that nlbridge watches the host's network namespace", nl.NetworkMode)
	}
	u, g, _ := strings.Cut(nl.User, ":")
	switch {
	case nl.User == "":
		p.add(0, "nlbridge: no user: want a non-root numeric one such as \"65532:65532\"")
	case isRoot(u) || g != "" && isRoot(g):
		p.add(0, "nlbridge: user %q is root; want a non-root one such as \"65532:65532\"", nl.User)
	}
	if nl.Privileged {
		p.add(0, "nlbridge: privileged: true; nlbridge needs no privileges")
	}
	if !slices.ContainsFunc(nl.CapDrop, func(c string) bool { return strings.EqualFold(c, "ALL") }) {
		p.add(0, "nlbridge: cap_drop %q: want [ALL]", nl.CapDrop)
	}
	if len(nl.CapAdd) > 0 {
		p.add(0, "nlbridge: cap_add %q: nlbridge needs no capabilities to watch its own namespace; raise net.core.rmem_max instead of adding CAP_NET_ADMIN", nl.CapAdd)
	}
	if !nl.ReadOnly {
		p.add(0, "nlbridge: read_only is not true: nlbridge writes nothing, so its root file system can be read-only")
	}
	if !slices.ContainsFunc(nl.SecurityOpt, func(o string) bool {
		return o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true"
	}) {
		p.add(0, "nlbridge: security_opt %q: want no-new-privileges:true", nl.SecurityOpt)
	}
	if !slices.Contains(nl.DependsOn, "nats") {
		p.add(0, "nlbridge: depends_on %q: want nats", nl.DependsOn)
	}

	// What it runs: the Dockerfile's ENTRYPOINT and CMD unless overridden.
	if !nl.Build.set || path.Clean(nl.Build.context) != "." || nl.Build.dockerfile != "" && nl.Build.dockerfile != dockerfileName {
		p.add(0, "nlbridge: build %+v: want build: . (the Dockerfile at the root)", nl.Build)
		return p.list
	}
	stages, err := parseDockerfile(dockerfile)
	if err != nil || len(stages) == 0 {
		p.add(0, "nlbridge: cannot read %s: %v", dockerfileName, err)
		return p.list
	}
	final := &stages[len(stages)-1]
	img, ok := dockerImage(&problems{}, final)
	if !ok {
		p.add(0, "nlbridge: %s has no exec-form ENTRYPOINT", dockerfileName)
		return p.list
	}
	argv := img.argv
	if len(nl.Entrypoint) > 0 {
		argv = append(slices.Clone(nl.Entrypoint), nl.Command...)
	} else if len(nl.Command) > 0 {
		argv = append([]string{img.binary}, nl.Command...)
	}
	sub, cfgPath, ok := runArgs(argv[1:])
	if sub != "run" || !ok {
		p.add(0, "nlbridge runs %q; want run --config FILE", argv)
		return p.list
	}
	cfgPath = path.Clean(cfgPath)

	// Which file that is: one mounted there, or else the one in the image.
	var file string
	for _, m := range nl.Volumes {
		t := path.Clean(m.target)
		if rel, ok := strings.CutPrefix(cfgPath, t+"/"); ok || cfgPath == t {
			if !ok {
				rel = ""
			}
			if !strings.HasPrefix(m.source, ".") && !strings.HasPrefix(m.source, "/") {
				p.add(0, "nlbridge: the config %s is in volume %q, which this test cannot read; mount a file", cfgPath, m.source)
				return p.list
			}
			file = path.Join(m.source, rel)
		}
	}
	if file == "" {
		if file, ok = imageFile(final, cfgPath); !ok {
			p.add(0, "nlbridge: the config %s is neither mounted nor copied into the image", cfgPath)
			return p.list
		}
	}

	// The config with the service's environment is valid.
	var environ []string
	for _, v := range nl.Environment {
		if strings.HasPrefix(v.name, "NLBRIDGE_") && (!v.hasValue || strings.Contains(v.value, "$")) {
			p.add(v.line, "nlbridge: %s takes its value from where compose runs; this test checks literal values only", v.name)
			continue
		}
		environ = append(environ, v.name+"="+v.value)
	}
	if len(nl.EnvFile) > 0 {
		p.add(0, "nlbridge: env_file %q: this test cannot check the variables it sets; extend it", nl.EnvFile)
	}
	cfg, err := readConfig(dir, file, environ)
	if err != nil {
		p.add(0, "nlbridge: config %s with environment %q: %v", file, nlbridgeVars(environ), err)
		return p.list
	}
	if cfg.Netlink.NetNS != "" {
		p.add(0, "nlbridge: netlink.netns is %q: entering another namespace needs CAP_SYS_ADMIN, which nlbridge does not have; watch the host's", cfg.Netlink.NetNS)
	}

	// Each NATS server is the nats service, through the port it publishes
	// on the host's loopback, the only way to it from the host's network.
	if len(cfg.NATS.Servers) == 0 {
		p.add(0, "nlbridge: nats.servers is empty: nlbridge would run its own NATS server instead of using service nats")
	}
	for _, s := range cfg.NATS.Servers {
		u, err := url.Parse(s)
		if err != nil {
			p.add(0, "nlbridge: NATS server %q: %v", s, err)
			continue
		}
		hostPort := u.Port()
		if hostPort == "" {
			hostPort = "4222"
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			p.add(0, "nlbridge: NATS server %s: want a loopback address: on the host's network nlbridge reaches service nats through its published port", s)
			continue
		}
		if !slices.ContainsFunc(nats.Ports, func(np port) bool { return np.published == hostPort && np.target == clientPort }) {
			p.add(0, "nlbridge: NATS server %s: service nats publishes no port %s for its client port %s (ports: %+v)", s, hostPort, clientPort, nats.Ports)
		}
	}
	return p.list
}

// checkNATSService checks the nats service and returns its client port in
// the container.
func checkNATSService(p *problems, c composeFile, nats service) (clientPort string) {
	if repo, _, _ := strings.Cut(nats.Image, ":"); repo != "nats" {
		p.add(0, "nats: image %q: want nats:2.10 or another tag of the official nats image", nats.Image)
	}
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	opts, err := server.ConfigureOptions(fs, nats.Command, noop, noop, noop)
	if err != nil {
		p.add(0, "nats: command %q: nats-server: %v", nats.Command, err)
		return "4222"
	}
	clientPort = "4222"
	if opts.Port != 0 {
		clientPort = strconv.Itoa(opts.Port)
	}
	if !opts.JetStream {
		p.add(0, "nats: command %q does not enable JetStream (--jetstream)", nats.Command)
	}
	stored := false
	for _, m := range nats.Volumes {
		if t := path.Clean(m.target); opts.StoreDir != "" && (opts.StoreDir == t || strings.HasPrefix(opts.StoreDir, t+"/")) {
			stored = true
			if _, ok := c.Volumes[m.source]; !ok && !strings.HasPrefix(m.source, ".") && !strings.HasPrefix(m.source, "/") {
				p.add(0, "nats: volume %q is not declared under the top-level volumes", m.source)
			}
		}
	}
	if !stored {
		p.add(0, "nats: the JetStream store directory %q (--store_dir) is not on a volume: streams would not outlive the container", opts.StoreDir)
	}
	if len(nats.Ports) == 0 {
		p.add(0, "nats: no ports published: nlbridge, on the host's network, could not reach it")
	}
	for _, np := range nats.Ports {
		if ip := net.ParseIP(np.hostIP); ip == nil || !ip.IsLoopback() {
			p.add(0, "nats: port %s is published on every address (host_ip %q); want 127.0.0.1 only", np.target, np.hostIP)
		}
	}
	return clientPort
}

// ---- systemd unit ----

// unitFile is a parsed systemd unit: its assignments in order, per section.
type unitFile struct {
	sections map[string][]unitEntry
}

type unitEntry struct {
	key, value string
	line       int
}

// parseUnit reads a unit file: [Section] headers, Key=Value lines, '#' and
// ';' comments, lines ending in '\' continued.
func parseUnit(src []byte) unitFile {
	u := unitFile{sections: map[string][]unitEntry{}}
	section, cont := "", ""
	contLine := 0
	for i, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if cont == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if cont == "" {
			contLine = i + 1
		}
		if body, more := strings.CutSuffix(line, `\`); more {
			cont += body + " "
			continue
		}
		line, cont = cont+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		u.sections[section] = append(u.sections[section], unitEntry{strings.TrimSpace(k), strings.TrimSpace(v), contLine})
	}
	return u
}

func (u unitFile) entries(section, key string) []unitEntry {
	var es []unitEntry
	for _, e := range u.sections[section] {
		if e.key == key {
			es = append(es, e)
		}
	}
	return es
}

// last returns the value of key's last assignment, which is the one that
// counts for single-valued settings.
func (u unitFile) last(section, key string) (unitEntry, bool) {
	es := u.entries(section, key)
	if len(es) == 0 {
		return unitEntry{}, false
	}
	return es[len(es)-1], true
}

// list returns the items a list setting ends up with: assignments add to
// it, an empty one clears it. set is false if key is never assigned.
func (u unitFile) list(section, key string) (items []string, set bool) {
	for _, e := range u.entries(section, key) {
		set = true
		if e.value == "" {
			items = nil
		}
		items = append(items, strings.Fields(e.value)...)
	}
	return items, set
}

func unitBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}

// execLine splits an Exec*= value into its prefixes ("-", "@", "+"…) and
// its words.
func execLine(v string) (prefix string, argv []string, err error) {
	i := strings.IndexFunc(v, func(r rune) bool { return !strings.ContainsRune("-@:+!|", r) })
	if i < 0 {
		i = len(v)
	}
	argv, err = splitWords(v[i:])
	return v[:i], argv, err
}

// checkUnit checks the systemd unit src; deploy/nlbridge.yaml is read from
// dir.
func checkUnit(dir string, src []byte) []string {
	p := &problems{file: unitName}
	u := parseUnit(src)

	// Hardening: a transient user with no privileges and little to see.
	want := []struct{ key, value, why string }{
		{"DynamicUser", "yes", "a transient unprivileged user"},
		{"NoNewPrivileges", "yes", "no privileges gained through exec"},
		{"ProtectSystem", "strict", "the file system read-only"},
		{"ProtectHome", "yes", "no home directories"},
		{"PrivateTmp", "yes", "a private /tmp"},
		{"PrivateDevices", "yes", "no devices"},
		{"ProtectKernelTunables", "yes", "/proc/sys and /sys read-only"},
		{"ProtectKernelModules", "yes", "no module loading"},
		{"ProtectControlGroups", "yes", "cgroups read-only"},
		{"RestrictNamespaces", "yes", "no namespace creation"},
		{"LockPersonality", "yes", "a fixed execution domain"},
		{"MemoryDenyWriteExecute", "yes", "no writable executable memory"},
		{"SystemCallArchitectures", "native", "native system calls only"},
	}
	for _, w := range want {
		e, ok := u.last("Service", w.key)
		got, isBool := unitBool(e.value)
		wantBool, _ := unitBool(w.value)
		switch {
		case !ok:
			p.add(0, "[Service] has no %s=%s (%s)", w.key, w.value, w.why)
		case isBool && got != wantBool || !isBool && e.value != w.value:
			p.add(e.line, "%s=%s: want %s (%s)", w.key, e.value, w.value, w.why)
		}
	}
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		caps, set := u.list("Service", key)
		switch {
		case !set:
			p.add(0, "[Service] has no empty %s=: nlbridge needs no capabilities", key)
		case len(caps) > 0:
			p.add(0, "%s ends up %q: want it empty; nlbridge needs no capabilities", key, caps)
		}
	}
	if e, ok := u.last("Service", "PrivateNetwork"); ok {
		if on, _ := unitBool(e.value); on {
			p.add(e.line, "PrivateNetwork=%s: nlbridge would watch an empty namespace of its own, not the host's", e.value)
		}
	}
	if e, ok := u.last("Service", "NetworkNamespacePath"); ok && e.value != "" {
		p.add(e.line, "NetworkNamespacePath=%s: nlbridge must run in the host's namespace", e.value)
	}
	if e, ok := u.last("Service", "User"); ok && isRoot(e.value) {
		p.add(e.line, "User=%s: nlbridge needs no privileges", e.value)
	}
	families, _ := u.list("Service", "RestrictAddressFamilies")
	if len(families) > 0 && strings.HasPrefix(families[0], "~") {
		p.add(0, "RestrictAddressFamilies denies %q: want an allow list", families)
	} else {
		for _, f := range []string{"AF_NETLINK", "AF_INET", "AF_INET6"} {
			if !slices.Contains(families, f) {
				p.add(0, "RestrictAddressFamilies allows %q: want %s among them (netlink for the kernel, IP for NATS)", families, f)
			}
		}
	}
	if ws, _ := u.list("Install", "WantedBy"); !slices.Contains(ws, "multi-user.target") {
		p.add(0, "[Install] WantedBy %q: want multi-user.target", ws)
	}

	// ExecStart runs nlbridge run --config X, ExecStartPre checks X first.
	starts := u.entries("Service", "ExecStart")
	if len(starts) != 1 {
		p.add(0, "%d ExecStart= lines: want one, nlbridge run --config /etc/nlbridge/nlbridge.yaml", len(starts))
		return p.list
	}
	start := starts[0]
	prefix, argv, err := execLine(start.value)
	if err != nil || len(argv) == 0 {
		p.add(start.line, "ExecStart=%s: %v", start.value, err)
		return p.list
	}
	if strings.ContainsAny(prefix, "+!") {
		p.add(start.line, "ExecStart=%s: the %q prefix runs nlbridge with full privileges, outside the sandbox", start.value, prefix)
	}
	sub, cfgPath, ok := runArgs(argv[1:])
	switch {
	case path.Base(argv[0]) != "nlbridge" || !path.IsAbs(argv[0]):
		p.add(start.line, "ExecStart runs %s; want the absolute path of nlbridge", argv[0])
	case sub != "run" || !ok:
		p.add(start.line, "ExecStart=%s: want nlbridge run --config FILE", start.value)
	case path.Base(cfgPath) != path.Base(configName):
		p.add(start.line, "ExecStart reads %s; want a file named %s, as %s is installed", cfgPath, path.Base(configName), configName)
	}
	checked := false
	for _, e := range u.entries("Service", "ExecStartPre") {
		prefix, pre, err := execLine(e.value)
		if err != nil || len(pre) == 0 || pre[0] != argv[0] {
			continue
		}
		if sub, c, ok := runArgs(pre[1:]); sub == "check" && ok && c == cfgPath {
			checked = true
			if strings.Contains(prefix, "-") {
				p.add(e.line, "ExecStartPre=%s: the '-' prefix ignores a failed check; want nlbridge not to start on a bad config", e.value)
			}
		}
	}
	if !checked {
		p.add(0, "no ExecStartPre=%s check --config %s: want the config checked before nlbridge starts", argv[0], cfgPath)
	}

	// The config, with the unit's environment, is valid.
	var environ []string
	for _, e := range u.entries("Service", "Environment") {
		words, _ := splitWords(e.value)
		environ = append(environ, words...)
	}
	cfg, err := readConfig(dir, configName, environ)
	if err != nil {
		p.add(start.line, "%s with the unit's Environment= %q: %v", configName, nlbridgeVars(environ), err)
		return p.list
	}
	if cfg.Netlink.NetNS != "" {
		p.add(0, "%s sets netlink.netns %q: entering another namespace needs CAP_SYS_ADMIN, and RestrictNamespaces= forbids it", configName, cfg.Netlink.NetNS)
	}
	return p.list
}

// ---- words ----

// splitWords splits s into words as a POSIX shell would, quotes removed,
// without expanding anything: "$X" stays as it is.
func splitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated \" in %q", s)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
