// Package dockerfile reads the few things tests check in the repository's
// Dockerfile: its instructions, the ENV and LABEL it sets, its stages' base
// images with their build-argument defaults, and exec-form (JSON) arguments.
// Test support only: nothing in the binary imports it. It reads the subset
// of the format the Dockerfile uses (continuation lines, comments, key=value
// lists, ${ARG} references), not every corner of Docker's parser.
package dockerfile

import (
	"encoding/json"
	"os"
	"strings"
)

// Instruction is one instruction: Cmd upper-cased ("FROM"), Args the rest
// of its line with continuation lines joined by a space.
type Instruction struct{ Cmd, Args string }

// File is a parsed Dockerfile, its instructions in order.
type File []Instruction

// Parse splits a Dockerfile into instructions, joining continuation lines
// and dropping comments and blank lines.
func Parse(data []byte) File {
	var out File
	var cur strings.Builder
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || line == "" && cur.Len() == 0 {
			continue
		}
		more := strings.HasSuffix(line, `\`)
		cur.WriteString(strings.TrimSpace(strings.TrimSuffix(line, `\`)) + " ")
		if more {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, Instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// Last returns the arguments of the last instruction cmd ("" if none): the
// one that counts for USER, ENTRYPOINT, CMD, HEALTHCHECK.
func (f File) Last(cmd string) string {
	for i := len(f) - 1; i >= 0; i-- {
		if f[i].Cmd == cmd {
			return f[i].Args
		}
	}
	return ""
}

// Env returns the variables the final image sets with ENV key=value.
func (f File) Env() map[string]string { return f.pairs("ENV", nil) }

// Labels returns the final image's LABEL key=value pairs, with $NAME and
// ${NAME} expanded from args (the build arguments; unknown ones become "").
func (f File) Labels(args map[string]string) map[string]string { return f.pairs("LABEL", args) }

// pairs collects key=value (value optionally double-quoted, possibly with
// spaces) of every cmd instruction of the final stage.
func (f File) pairs(cmd string, args map[string]string) map[string]string {
	out := map[string]string{}
	for _, ins := range f.finalStage() {
		if ins.Cmd != cmd {
			continue
		}
		for rest := ins.Args; rest != ""; {
			k, v, ok := strings.Cut(rest, "=")
			if !ok {
				break
			}
			if strings.HasPrefix(v, `"`) {
				end := strings.Index(v[1:], `"`)
				if end < 0 {
					break
				}
				rest, v = strings.TrimSpace(v[end+2:]), v[1:end+1]
			} else {
				v, rest, _ = strings.Cut(v, " ")
				rest = strings.TrimSpace(rest)
			}
			if args != nil {
				v = os.Expand(v, func(name string) string { return args[name] })
			}
			out[strings.TrimSpace(k)] = v
		}
	}
	return out
}

// Stage returns the instructions of the stage named name (`FROM image AS
// name`, case-insensitive), without its FROM, or nil if there is none; ""
// names the final stage. Last, Env and Labels of the result read that
// stage: the image `docker build --target name` makes.
func (f File) Stage(name string) File {
	if name == "" {
		return f.finalStage()
	}
	for i, ins := range f {
		if ins.Cmd != "FROM" {
			continue
		}
		fields := strings.Fields(ins.Args)
		if n := len(fields); n < 3 || !strings.EqualFold(fields[n-2], "AS") || !strings.EqualFold(fields[n-1], name) {
			continue
		}
		end := i + 1
		for end < len(f) && f[end].Cmd != "FROM" {
			end++
		}
		return f[i+1 : end]
	}
	return nil
}

// finalStage returns the instructions after the last FROM.
func (f File) finalStage() File {
	for i := len(f) - 1; i >= 0; i-- {
		if f[i].Cmd == "FROM" {
			return f[i+1:]
		}
	}
	return f
}

// Stages returns each FROM's arguments with the build arguments declared
// before the first FROM (ARG NAME=default) expanded to their defaults; other
// references stay as written ("--platform=${BUILDPLATFORM} golang:1.27.3-bookworm AS build").
func (f File) Stages() []string {
	global := map[string]string{}
	var froms []string
	for _, ins := range f {
		switch ins.Cmd {
		case "ARG":
			if k, v, ok := strings.Cut(ins.Args, "="); ok && len(froms) == 0 {
				global[k] = v
			}
		case "FROM":
			froms = append(froms, os.Expand(ins.Args, func(k string) string {
				if v, ok := global[k]; ok {
					return v
				}
				return "${" + k + "}"
			}))
		}
	}
	return froms
}

// ExecForm decodes exec-form arguments (`["/bin", "arg"]`); ok is false for
// the shell form.
func ExecForm(args string) (argv []string, ok bool) {
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		return nil, false
	}
	return argv, true
}
