package config

import "fmt"

// keyPassphrase returns the key passphrase from the environment:
// PAYRAILS_PROXY_<NAME>_KEY_PASSPHRASE, else PAYRAILS_PROXY_KEY_PASSPHRASE
// for an upstream without key_passphrase_file. A per-upstream variable
// together with key_passphrase_file is refused: which one is meant?
// It also returns the variable's name ("" when none was set).
func (b *builder) keyPassphrase(ru *rawUpstream, name string) (Secret, string) {
	per := envPrefix + envName(name) + "_KEY_PASSPHRASE"
	if v, ok := b.env.get(per); ok {
		if f := ru.keyPassphraseFile; f.set {
			b.add(f.at, "both key_passphrase_file and the environment variable %s are set; unset one so it is clear which passphrase to use", per)
			return Secret{}, ""
		}
		return NewSecret(v), per
	}
	if ru.keyPassphraseFile.set {
		return Secret{}, ""
	}
	global := envPrefix + "KEY_PASSPHRASE"
	if v, ok := b.env.get(global); ok {
		return NewSecret(v), global
	}
	return Secret{}, ""
}

// pkcs11PIN returns the token PIN from the environment when the URI has no
// pin-source: PAYRAILS_PROXY_<NAME>_PKCS11_PIN, else
// PAYRAILS_PROXY_PKCS11_PIN. Both a pin-source and the per-upstream
// variable is refused (which one is meant?); no PIN at all is refused too,
// since a token's private keys are only usable after login.
func (b *builder) pkcs11PIN(ru *rawUpstream, k *KeyURI, name string) (Secret, string) {
	per := envPrefix + envName(name) + "_PKCS11_PIN"
	global := envPrefix + "PKCS11_PIN"
	if v, ok := b.env.get(per); ok {
		if k.PINFile != "" {
			b.add(ru.keyURI.at, "both pin-source in key_uri and the environment variable %s are set; unset one so it is "+
				"clear which PIN to use", per)
			return Secret{}, ""
		}
		return NewSecret(v), per
	}
	if k.PINFile != "" {
		return Secret{}, ""
	}
	if v, ok := b.env.get(global); ok {
		return NewSecret(v), global
	}
	b.add(ru.keyURI.at, "key_uri has no PIN: add pin-source=file:/PATH (a file holding the token's user PIN) to the "+
		"URI, or set the environment variable %s (or %s); the PIN is never read from the config file or argv", global, per)
	return Secret{}, ""
}

// token builds the managed-token settings: a client ID and exactly one
// client secret source (token.client_secret_file or
// PAYRAILS_PROXY_<NAME>_CLIENT_SECRET), or none of them.
func (b *builder) token(ru *rawUpstream, name string) Token {
	t := Token{ClientID: ru.clientID.value, ClientSecretFile: b.file(ru.clientSecretFile)}
	envVar := envPrefix + envName(name) + "_CLIENT_SECRET"
	v, fromEnv := b.env.get(envVar)
	idKey := ru.at.key + ".token.client_id"
	switch {
	case fromEnv && ru.clientSecretFile.set:
		b.add(ru.clientSecretFile.at, "both token.client_secret_file and the environment variable %s are set; unset one so it is clear which secret to use", envVar)
	case ru.clientID.set && !fromEnv && !ru.clientSecretFile.set:
		b.add(ru.clientID.at, "token.client_id is set but there is no client secret; set token.client_secret_file, or the environment variable %s", envVar)
	case !ru.clientID.set && ru.clientSecretFile.set:
		at := ru.clientSecretFile.at
		at.key = idKey
		b.add(at, "token.client_secret_file is set but token.client_id is not; set client_id to the Client ID from the Payrails dashboard, or remove the secret")
	case !ru.clientID.set && fromEnv:
		b.errs.add(&Error{Source: "env " + envVar, Key: idKey, Reason: fmt.Sprintf(
			"a client secret is set in %s but token.client_id is not; set token.client_id to the Client ID from the Payrails dashboard, or unset the variable", envVar)})
	case fromEnv:
		t.ClientSecret, t.ClientSecretEnv = NewSecret(v), envVar
	}
	return t
}

// unique checks the rules between upstreams: names unique (also once turned
// into environment variable names), hosts unique (forward requests are
// routed by host), and at most one default.
func (b *builder) unique(ups []Upstream, from []*rawUpstream) {
	names := map[string]int{}
	envs := map[string]int{}
	hosts := map[string]int{}
	firstDefault := -1
	for i, u := range ups {
		ru := from[i]
		if j, dup := names[u.Name]; dup && u.Name != "" {
			b.add(ru.name.at, "name %q is already used by %s; names must be unique", u.Name, from[j].at.key)
		} else if j, dup := envs[envName(u.Name)]; dup && u.Name != "" {
			b.add(ru.name.at, "names %q and %q (%s) both give the environment variable prefix %s%s_; rename one",
				u.Name, ups[j].Name, from[j].at.key, envPrefix, envName(u.Name))
		}
		setFirst(names, u.Name, i)
		setFirst(envs, envName(u.Name), i)
		if j, dup := hosts[u.Host]; dup && u.Host != "" {
			b.add(ru.url.at, "host %q is also the host of %s (%q); forward requests are routed by host, so each upstream needs its own host",
				u.Host, from[j].at.key, ups[j].Name)
		}
		setFirst(hosts, u.Host, i)
		if ru.isDefault.set && u.Default {
			if firstDefault >= 0 {
				b.add(ru.isDefault.at, "%s (%q) and %s (%q) both have default: true; only one upstream can receive origin-form requests, so remove one",
					from[firstDefault].at.key, ups[firstDefault].Name, ru.at.key, u.Name)
				continue
			}
			firstDefault = i
		}
	}
}

// setFirst records i under k unless k is already there.
func setFirst(m map[string]int, k string, i int) {
	if _, ok := m[k]; !ok {
		m[k] = i
	}
}
