package config

import (
	"os"
	"path/filepath"
)

// Load reads the YAML file at path (path "" means no file), then applies
// environment variables (looked up with lookupEnv, normally os.LookupEnv; nil
// means no environment), then flags, fills defaults and validates.
// Precedence: flags > environment > file > defaults.
//
// Files and folders the configuration names must exist. On failure Load
// returns a nil *Config and an error that is an *Errors listing every
// problem. Load has no side effects besides reading the file system, and is
// safe for concurrent use if lookupEnv is.
func Load(path string, lookupEnv func(string) (string, bool), flags Overrides) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			c := &collector{}
			c.add(&Error{Source: fileSource(path), Reason: "cannot read the configuration file: " + err.Error() +
				"; check the --config path and its permissions", err: err})
			return nil, c.err()
		}
	}
	return Parse(data, path, lookupEnv, flags, true)
}

// Parse is Load's work on bytes already read: name is the file's path, used
// in messages and to resolve relative paths in the file ("" means there is
// no file; data should then be empty). When checkFiles is false it does not
// check that referenced files and folders exist (for fuzzing and for tools
// that validate a file meant for another machine).
//
// On failure Parse returns a nil *Config and an *Errors. It is safe for
// concurrent use if lookupEnv is, and never panics on any input.
func Parse(data []byte, name string, lookupEnv func(string) (string, bool), flags Overrides, checkFiles bool) (*Config, error) {
	errs := &collector{}
	r := &raw{name: name}
	if name != "" || len(data) > 0 {
		r.file = fileSource(name)
	}
	r.baseDir = baseDir(name)
	decodeYAML(data, r, errs)
	env := lookupFunc(lookupEnv)
	applyOverrides(r, env, &flags, errs)
	b := &builder{values: values{errs: errs, checkFiles: checkFiles, baseDir: r.baseDir}, env: env}
	cfg := b.build(r)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// fileSource is Error.Source for values from the file.
func fileSource(name string) string {
	if name == "" {
		return "file (unnamed)"
	}
	return "file " + name
}

// baseDir is the directory relative paths in the file resolve against: the
// file's own directory, so a config works wherever it is started from.
func baseDir(name string) string {
	dir := filepath.Dir(name)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
