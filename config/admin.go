package config

import "os"

// AdminListen returns the admin listener address that Load would give
// serve with the same file, environment and --admin-listen flag (flag >
// PAYRAILS_PROXY_ADMIN_LISTEN > the file's admin_listen > the default),
// for programs that must find a running proxy's admin port, such as the
// health subcommand of a container's HEALTHCHECK.
//
// Only admin_listen is read and validated: problems elsewhere in the file
// are serve's to report, and a serve started with flags of its own (an
// upstream, say) has a configuration this call cannot see. On failure (the
// file cannot be read or is not YAML, or the address is not HOST:PORT) it
// returns "" and an *Errors. It has no side effects besides reading path
// ("" means no file).
func AdminListen(path string, lookupEnv func(string) (string, bool), flag string) (string, error) {
	errs := &collector{}
	r := &raw{name: path}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			errs.add(&Error{Source: fileSource(path), Reason: "cannot read the configuration file: " + err.Error() +
				"; check the path (--config, PAYRAILS_PROXY_CONFIG) and its permissions", err: err})
			return "", errs.err()
		}
		r.file = fileSource(path)
		fileErrs := &collector{}
		decodeYAML(data, r, fileErrs)
		for _, e := range fileErrs.errs {
			// A syntax error (no key) hides admin_listen; an error about
			// admin_listen itself is this call's. The rest is serve's.
			if e.Key == "" || e.Key == "admin_listen" {
				errs.add(e)
			}
		}
	}
	for _, g := range globalOverrides {
		if g.key != "admin_listen" {
			continue
		}
		for _, v := range g.lookup(lookupFunc(lookupEnv), &Overrides{AdminListen: flag}) {
			r.adminListen = setting{value: v.value, set: true, at: origin{source: v.source, key: g.key}}
		}
	}
	b := &builder{errs: errs}
	admin := b.orDefault(r.adminListen, "admin_listen", DefaultAdminListen)
	b.listenAddr(admin)
	if err := errs.err(); err != nil {
		return "", err
	}
	return admin.value, nil
}
