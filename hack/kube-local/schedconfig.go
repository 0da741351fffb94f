package main

// The kube-scheduler configuration actually run: the user's
// KubeSchedulerConfiguration (as deployed, e.g. manifests/scheduler/*.yaml)
// with the few fields that depend on this process rewritten.
//
// The file is handled as generic YAML (map[string]any via sigs.k8s.io/yaml,
// the same YAML library Kubernetes uses) rather than decoded into the typed
// k8s.io/kube-scheduler/config/v1 struct: a typed round trip would add every
// defaulted field and drop nothing visibly, but it would also hide what the
// user wrote; here only the rewritten keys change and everything else,
// including fields this program does not know, reaches kube-scheduler as is.
// kube-scheduler then decodes and validates the result strictly, exactly as
// it would the original (cmd/kube-scheduler/app/options.LoadConfigFromFile).

import (
	"fmt"
	"net/url"
	"os"

	"sigs.k8s.io/yaml"
)

// rewriteSchedulerConfig reads src (empty: start from an empty
// configuration, i.e. all kube-scheduler defaults) and returns the YAML to
// run with:
//   - clientConnection.kubeconfig = kubeconfig: once --config is used,
//     kube-scheduler takes its API server connection only from the file
//     (the --kubeconfig flag is ignored);
//   - leaderElection.leaderElect = false: one scheduler, no Lease to wait
//     for at start (the --leader-elect flag would also be honoured, but the
//     file is what a reader of DATA_DIR/scheduler-config.yaml looks at);
//   - extenders[*].urlPrefix = extenderURL when extenderURL is set, and
//     enableHTTPS to match its scheme, so a file written for HTTPS can be
//     pointed at a plain-HTTP test extender and back. tlsConfig is left as
//     written (kube-scheduler, pkg/scheduler/extender.go, uses it either
//     way; enableHTTPS without a CA there means "do not verify").
//
// It returns the number of extenders found, so the caller can refuse an
// --extender-url that would change nothing.
func rewriteSchedulerConfig(src, kubeconfig, extenderURL string) ([]byte, int, error) {
	cfg := map[string]any{}
	if src != "" {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, 0, err
		}
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", src, err)
		}
		if cfg == nil { // a file with only comments
			cfg = map[string]any{}
		}
	}
	if _, ok := cfg["apiVersion"]; !ok {
		cfg["apiVersion"] = "kubescheduler.config.k8s.io/v1"
	}
	if _, ok := cfg["kind"]; !ok {
		cfg["kind"] = "KubeSchedulerConfiguration"
	}
	if cfg["kind"] != "KubeSchedulerConfiguration" {
		return nil, 0, fmt.Errorf("%s: kind is %v, want KubeSchedulerConfiguration", src, cfg["kind"])
	}

	cc, err := subMap(cfg, "clientConnection")
	if err != nil {
		return nil, 0, err
	}
	cc["kubeconfig"] = kubeconfig

	le, err := subMap(cfg, "leaderElection")
	if err != nil {
		return nil, 0, err
	}
	le["leaderElect"] = false

	n := 0
	if exts, ok := cfg["extenders"]; ok && exts != nil {
		list, ok := exts.([]any)
		if !ok {
			return nil, 0, fmt.Errorf("extenders: want a list, got %T", exts)
		}
		for i, e := range list {
			ext, ok := e.(map[string]any)
			if !ok {
				return nil, 0, fmt.Errorf("extenders[%d]: want a mapping, got %T", i, e)
			}
			n++
			if extenderURL == "" {
				continue
			}
			u, err := url.Parse(extenderURL)
			if err != nil {
				return nil, 0, fmt.Errorf("--extender-url: %w", err)
			}
			ext["urlPrefix"] = extenderURL
			ext["enableHTTPS"] = u.Scheme == "https"
		}
	}

	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, 0, err
	}
	return out, n, nil
}

// subMap returns cfg[key] as a mapping, creating it when absent.
func subMap(cfg map[string]any, key string) (map[string]any, error) {
	switch v := cfg[key].(type) {
	case nil:
		m := map[string]any{}
		cfg[key] = m
		return m, nil
	case map[string]any:
		return v, nil
	default:
		return nil, fmt.Errorf("%s: want a mapping, got %T", key, v)
	}
}
