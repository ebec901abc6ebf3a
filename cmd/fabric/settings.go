package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

// configFile is the agent's settings file in its data directory, read
// when --config names none.
const configFile = "config.json"

// envName is the environment variable of a flag: FABRIC_ and its name in
// upper case, dashes as underscores (--num-cpus: FABRIC_NUM_CPUS).
func envName(flag string) string {
	return "FABRIC_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applySettings fills the flags not given on the command line: first
// from the environment (envName; overrides maps a flag to another
// variable), then from a JSON config file, an object of flag names and
// values (text, numbers, booleans, or lists for the repeatable flags).
// path "" reads dataDir's config.json when it exists.
func applySettings(flags *pflag.FlagSet, overrides map[string]string, path, dataDir string) error {
	var errs []error
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" {
			return
		}
		env := envName(f.Name)
		if o, ok := overrides[f.Name]; ok {
			env = o
		}
		if v := os.Getenv(env); v != "" {
			if err := flags.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	explicit := path != ""
	if !explicit {
		path = filepath.Join(dataDir, configFile)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var settings map[string]any
	if err := json.Unmarshal(b, &settings); err != nil {
		return fmt.Errorf("config %s: not a JSON object of flag names and values: %w", path, err)
	}
	for name, v := range settings {
		f := flags.Lookup(name)
		if f == nil || name == "config" {
			errs = append(errs, fmt.Errorf("config %s: no flag --%s (see fabric agent --help)", path, name))
			continue
		}
		if f.Changed {
			continue // the command line and the environment come first
		}
		var values []string
		switch v := v.(type) {
		case []any:
			for _, it := range v {
				values = append(values, fmt.Sprint(it))
			}
		case map[string]any:
			for k, it := range v { // labels and resources as an object
				values = append(values, fmt.Sprintf("%s=%v", k, it))
			}
		default:
			values = []string{fmt.Sprint(v)}
		}
		for _, s := range values {
			if err := flags.Set(name, s); err != nil {
				errs = append(errs, fmt.Errorf("config %s: %s: %w", path, name, err))
			}
		}
	}
	return errors.Join(errs...)
}
