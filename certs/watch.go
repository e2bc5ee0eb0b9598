package certs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// WatchOptions tune a Watcher; the configuration's reload block supplies
// them (config owns their defaults).
type WatchOptions struct {
	Debounce     time.Duration // quiet time after the last event before reloading; >= 0
	PollInterval time.Duration // fallback re-read of every store; > 0
}

// Watcher reloads Stores when their files change. It watches directories,
// never single files, so that every way of replacing a file is seen: mv
// into place, cp over a file, an editor's rename-and-create, deletion, and
// the Kubernetes atomic writer's "..data" symlink swap. Events are debounced;
// a periodic poll catches what events miss (network filesystems, lost
// watches, a folder replaced wholesale) and re-establishes watches; a timer
// re-reads a store when one of its certificates starts or stops being valid.
//
// Whatever the Watcher does, a Store's failure rule holds: a bad drop keeps
// the previous certificate.
type Watcher struct {
	stores []*Store
	all    []reloadable // the stores, then the root stores
	opts   WatchOptions
	log    *zap.Logger
	fsw    *fsnotify.Watcher
	force  chan struct{}
	dirs   map[string][]reloadable // watched directory -> what reads from it
}

// reloadable is what the Watcher reloads: a certificate Store or a
// RootStore (ca_file).
type reloadable interface {
	Reload() (Result, error)
	Name() string
	watchDirs() []string
}

func (s *Store) watchDirs() []string { return watchDirs(s.Source()) }

// NewWatcher starts watching the stores' directories, and those of the
// root stores' ca_file. It fails when the operating system refuses a
// watcher (inotify limits); directories that do not exist yet are retried
// on every poll.
func NewWatcher(stores []*Store, opts WatchOptions, log *zap.Logger, roots ...*RootStore) (*Watcher, error) {
	if opts.Debounce < 0 || opts.PollInterval <= 0 {
		return nil, fmt.Errorf("watch options %+v: the debounce must be >= 0 and the poll interval > 0", opts)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("starting the file watcher: %w (on Linux, raise fs.inotify.max_user_instances)", err)
	}
	w := &Watcher{stores: stores, opts: opts, log: log, fsw: fsw, force: make(chan struct{}, 1)}
	for _, s := range stores {
		w.all = append(w.all, s)
	}
	for _, r := range roots {
		w.all = append(w.all, r)
	}
	w.ensureWatches()
	return w, nil
}

// ReloadAll asks for an immediate reload of every store, as on SIGHUP. It
// never blocks; requests made while one is pending are merged.
func (w *Watcher) ReloadAll() {
	select {
	case w.force <- struct{}{}:
	default:
	}
}

// Close releases the operating system's watcher. Run calls it on return;
// call it when Run will never be called. Calling it twice is harmless.
func (w *Watcher) Close() error { return w.fsw.Close() }

// Run handles events until ctx is done, then releases the watcher. It
// returns nil on cancellation.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.Close()
	poll := time.NewTicker(w.opts.PollInterval)
	defer poll.Stop()
	debounce := stoppedTimer()
	defer debounce.Stop()
	boundary := stoppedTimer()
	defer boundary.Stop()
	w.armBoundary(boundary)

	pending := map[reloadable]bool{}
	var first time.Time // of the pending batch: a steady stream of events must not postpone the reload forever
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if w.note(ev, pending) {
				if first.IsZero() {
					first = time.Now()
				}
				if time.Since(first) < maxDebounceDelay(w.opts.Debounce) {
					debounce.Reset(w.opts.Debounce)
				}
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			w.log.Warn("file watcher error; the periodic re-read still picks up changes", zap.Error(err))
		case <-debounce.C:
			w.reload(keys(pending), "file change")
			clear(pending)
			first = time.Time{}
			w.armBoundary(boundary)
		case <-w.force:
			w.reload(w.all, "reload requested (SIGHUP)")
			w.armBoundary(boundary)
		case <-poll.C:
			w.reload(w.all, "")
			w.armBoundary(boundary)
		case <-boundary.C:
			w.reload(w.all, "certificate validity boundary")
			w.armBoundary(boundary)
		}
	}
}

// note records which stores an event concerns; it reports whether any does.
func (w *Watcher) note(ev fsnotify.Event, pending map[reloadable]bool) bool {
	if ev.Op == fsnotify.Chmod {
		return false // noisy (backup tools, indexers) and never changes content
	}
	dir := filepath.Dir(ev.Name)
	stores := w.dirs[dir]
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		stores = append(slices.Clone(stores), w.dirs[ev.Name]...) // a watched folder itself went away
	}
	for _, s := range stores {
		pending[s] = true
	}
	w.log.Debug("file event", zap.String("path", ev.Name), zap.String("op", ev.Op.String()), zap.Int("stores", len(stores)))
	return len(stores) > 0
}

func (w *Watcher) reload(stores []reloadable, why string) {
	for _, s := range stores {
		res, _ := s.Reload()
		if why != "" || res != ResultUnchanged {
			w.log.Debug("certificate reload", zap.String(fieldUpstream, s.Name()), zap.String("trigger", why),
				zap.String("result", string(res)))
		}
	}
	w.ensureWatches() // a swap may have replaced folders or moved symlink targets
}

// ensureWatches watches every directory the stores depend on: the folder
// (or the folders of the cert and key files), the folder of the passphrase
// file, and the folders that symlinks in them point into. Adding a watch
// that exists is harmless; a folder that was replaced gets a new watch.
func (w *Watcher) ensureWatches() {
	dirs := map[string][]reloadable{}
	for _, s := range w.all {
		for _, d := range s.watchDirs() {
			dirs[d] = append(dirs[d], s)
		}
	}
	for d := range dirs {
		if err := w.fsw.Add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("cannot watch folder; changes are picked up by the periodic re-read only",
				zap.String("folder", d), zap.Error(err))
		}
	}
	for _, d := range w.fsw.WatchList() {
		if _, ok := dirs[d]; !ok {
			_ = w.fsw.Remove(d) // e.g. an old Kubernetes ..2026_xx folder
		}
	}
	w.dirs = dirs
}

// watchDirs lists the directories whose changes can change what src loads.
func watchDirs(src Source) []string {
	var dirs, files []string
	if src.Dir != "" {
		dirs = append(dirs, src.Dir)
		if paths, _ := listDir(src.Dir); paths != nil {
			files = paths
		}
	} else {
		dirs = append(dirs, filepath.Dir(src.CertFile), filepath.Dir(src.KeyFile))
		files = append(files, src.CertFile, src.KeyFile)
	}
	if src.Passphrase.File != "" {
		dirs = append(dirs, filepath.Dir(src.Passphrase.File))
		files = append(files, src.Passphrase.File)
	}
	if src.Token != nil && src.Token.cfg.PIN.File != "" { // a fixed PIN file is tried at once
		dirs = append(dirs, filepath.Dir(src.Token.cfg.PIN.File))
		files = append(files, src.Token.cfg.PIN.File)
	}
	for _, f := range files {
		if real, err := filepath.EvalSymlinks(f); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
	}
	for i, d := range dirs {
		dirs[i] = filepath.Clean(d)
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}

// armBoundary sets t to fire just after the next moment when a loaded
// certificate becomes valid or expires, so the choice follows the clock
// even when no file changes.
func (w *Watcher) armBoundary(t *time.Timer) {
	now := time.Now()
	var next time.Time
	for _, s := range w.stores {
		snap := s.Current()
		if snap == nil {
			continue
		}
		for _, p := range snap.Pairs {
			for _, b := range []time.Time{p.NotBefore(), p.NotAfter().Add(time.Second)} {
				if b.After(now) && (next.IsZero() || b.Before(next)) {
					next = b
				}
			}
		}
	}
	t.Stop()
	if !next.IsZero() {
		t.Reset(next.Sub(now) + 10*time.Millisecond)
	}
}

// maxDebounceDelay caps how long events can keep postponing a reload.
func maxDebounceDelay(d time.Duration) time.Duration { return max(4*d, time.Second) }

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func keys(m map[reloadable]bool) []reloadable {
	out := make([]reloadable, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	return out
}
