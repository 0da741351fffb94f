// kube-local runs a real upstream Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, all built from
// k8s.io/kubernetes) inside one process, for lvmpin's tests.
//
// There is no kubelet: tests create Node objects themselves and play the
// node side. The configuration follows from that (see apiserverArgs,
// controllerManagerArgs).
//
// Usage:
//
//	kube-local --data-dir DIR [--scheduler-config FILE] [--extender-url URL]
//	           [--bind-address 127.0.0.1] [--apiserver-port N] [--v N]
//
// When everything is up it prints one line to stdout,
//
//	kube-local ready kubeconfig=DIR/admin.kubeconfig apiserver=https://127.0.0.1:P scheduler-metrics=https://127.0.0.1:Q/metrics
//
// and writes the same as JSON to DIR/ready.json. Component logs (klog) go to
// stderr. SIGTERM or SIGINT stops everything and exits 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/rest"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

// defaultControllers are the kube-controller-manager controllers that run
// (canonical names of v1.37, cmd/kube-controller-manager/names; the old
// short names such as "statefulset" are accepted aliases). Left out on
// purpose:
//   - node-lifecycle-controller: with no kubelet no Node ever posts status,
//     so after --node-monitor-grace-period it would mark every Node
//     NotReady/Unknown, taint it (node.kubernetes.io/unreachable) and have
//     the taint-eviction-controller evict the pods. Test Nodes must stay as
//     the test created them.
//   - taint-eviction-controller, pod-garbage-collector-controller: they act
//     on node state that a kubelet-less cluster does not have (podgc would
//     also delete pods bound to Nodes a test removed, which tests may want
//     to observe themselves).
//   - ttl-after-finished, job, cronjob, daemonset, endpoints,
//     endpointslice, resourcequota, csr*, bootstrap, node-ipam, ...: not
//     used by lvmpin and each one more set of informers on a 2-core machine.
var defaultControllers = []string{
	// PV/PVC binding and the pv.kubernetes.io/* / volume.kubernetes.io/*
	// annotations, as in a real cluster (dynamic provisioning itself is
	// lvmpin's provisioner's job).
	"persistentvolume-binder-controller",
	// Harmless for lvmpin: for a CSI volume it only records an
	// ExternalExpanding event ("waiting for an external controller to
	// expand this PVC"); it resizes nothing itself
	// (pkg/controller/volume/expand). Kept so PVC events look as in a real
	// cluster.
	"persistentvolume-expander-controller",
	// Remove the kubernetes.io/pvc-protection and kubernetes.io/pv-protection
	// finalizers that the StorageObjectInUseProtection admission plugin adds;
	// without them no PVC or PV could ever be deleted.
	"persistentvolumeclaim-protection-controller",
	"persistentvolume-protection-controller",
	// PVCs for generic ephemeral volumes (pod.spec.volumes[].ephemeral).
	"ephemeral-volume-controller",
	// ownerReferences: cascading deletion.
	"garbage-collector-controller",
	"statefulset-controller",
	"replicaset-controller",
	"deployment-controller",
	"namespace-controller",
	// The "default" ServiceAccount in every namespace; pods cannot be
	// created in a namespace before it exists (ServiceAccount admission).
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	// The kube-root-ca.crt ConfigMap in every namespace, which projected
	// service account token volumes reference.
	"root-ca-certificate-publisher-controller",
	// Aggregated ClusterRoles (admin, edit, view) filled in as in a real
	// cluster.
	"clusterrole-aggregation-controller",
}

type options struct {
	dataDir         string
	schedulerConfig string
	extenderURL     string
	bindAddress     string
	apiserverPort   int
	verbosity       int
	controllers     string
}

func main() {
	var o options
	fs := flag.NewFlagSet("kube-local", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for all state: etcd data, certificates, keys, kubeconfigs (required)")
	fs.StringVar(&o.schedulerConfig, "scheduler-config", "", "KubeSchedulerConfiguration YAML as deployed; empty: kube-scheduler defaults")
	fs.StringVar(&o.extenderURL, "extender-url", "", "replace every extenders[].urlPrefix of --scheduler-config by this URL")
	fs.StringVar(&o.bindAddress, "bind-address", "127.0.0.1", "address all components listen on")
	fs.IntVar(&o.apiserverPort, "apiserver-port", 0, "kube-apiserver port; 0: a free port")
	fs.IntVar(&o.verbosity, "v", 0, "klog verbosity of the components")
	fs.StringVar(&o.controllers, "controllers", strings.Join(defaultControllers, ","), "kube-controller-manager --controllers")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "kube-local: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	if o.dataDir == "" {
		fmt.Fprintln(os.Stderr, "kube-local: --data-dir is required")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// component is one control plane component running in a goroutine.
type component struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startComponent(name string, run func(ctx context.Context) error) *component {
	ctx, cancel := context.WithCancel(context.Background())
	// Contextual logging (k8s.io/klog/v2): components that log through
	// klog.FromContext get their name in front of their messages.
	ctx = klog.NewContext(ctx, klog.Background().WithName(name))
	c := &component{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = run(ctx)
	}()
	return c
}

// stop cancels the component and waits for it up to timeout.
func (c *component) stop(timeout time.Duration) {
	c.cancel()
	select {
	case <-c.done:
		// Errors after cancellation are how some components say they were
		// cancelled (kube-scheduler: "finished without leader elect").
		if c.err != nil && !errors.Is(c.err, context.Canceled) {
			klog.Infof("kube-local: %s stopped: %v", c.name, c.err)
		}
	case <-time.After(timeout):
		klog.Errorf("kube-local: %s did not stop within %s", c.name, timeout)
	}
}

// readyInfo is DATA_DIR/ready.json.
type readyInfo struct {
	Kubeconfig              string `json:"kubeconfig"`
	APIServer               string `json:"apiserver"`
	SchedulerMetrics        string `json:"schedulerMetrics"`
	ControllerManagerHealth string `json:"controllerManagerHealth"`
	// CAFile verifies the serving certificates of all three components.
	CAFile string `json:"caFile"`
}

func run(o options) int {
	// Logging is process-global and may be applied once only, so it is done
	// here for all components rather than by each (see components.go).
	logCfg := logsapi.NewLoggingConfiguration()
	logCfg.Verbosity = logsapi.VerbosityLevel(o.verbosity)
	if err := logsapi.ValidateAndApply(logCfg, utilfeature.DefaultFeatureGate); err != nil {
		fmt.Fprintf(os.Stderr, "kube-local: logging: %v\n", err)
		return 1
	}
	defer klog.Flush()
	// As kube-apiserver and kube-controller-manager do: their clients talk
	// to a server of the very same version, so deprecation warnings from
	// generic watches are noise.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})

	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		klog.Errorf("kube-local: %v", err)
		return 1
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		klog.Errorf("kube-local: %v", err)
		return 1
	}

	// Signals are caught from the start (a test may give up while the
	// control plane is still coming up): the first one cancels stopCtx,
	// which aborts start-up or ends the wait below; a second one during a
	// slow shutdown exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	stopCtx, requestStop := context.WithCancel(context.Background())
	defer requestStop()
	go func() {
		s := <-sigs
		klog.Infof("kube-local: %v received, stopping", s)
		requestStop()
		<-sigs
		klog.Errorf("kube-local: second signal, exiting now")
		klog.Flush()
		os.Exit(1)
	}()

	cp := &controlPlane{opts: o, dataDir: dataDir}
	if err := cp.start(stopCtx); err != nil {
		if stopCtx.Err() != nil {
			if cp.apiserver != nil && !cp.apiserverReady {
				// kube-apiserver's post-start hooks treat a cancelled
				// context as fatal (klog.Fatal in
				// k8s.io/apiserver/pkg/server/hooks.go, exit 255), so a
				// graceful stop is only possible once /readyz passed. Before
				// that there is nothing worth saving: leave at once.
				klog.Info("kube-local: stopped during kube-apiserver start-up")
				return 0
			}
			cp.shutdown()
			return 0
		}
		klog.Errorf("kube-local: start-up failed: %v", err)
		cp.shutdown()
		return 1
	}

	info := readyInfo{
		Kubeconfig:              filepath.Join(dataDir, "admin.kubeconfig"),
		APIServer:               cp.apiserverURL,
		SchedulerMetrics:        cp.schedulerURL + "/metrics",
		ControllerManagerHealth: cp.controllerManagerURL + "/healthz",
		CAFile:                  cp.pki.ca.certFile,
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFile(filepath.Join(dataDir, "ready.json"), append(data, '\n'), 0o644); err != nil {
		klog.Errorf("kube-local: %v", err)
		cp.shutdown()
		return 1
	}
	// The one line on stdout. Written in one call on an unbuffered
	// *os.File, so a reader sees it whole as soon as it is printed.
	fmt.Fprintf(os.Stdout, "kube-local ready kubeconfig=%s apiserver=%s scheduler-metrics=%s\n",
		info.Kubeconfig, info.APIServer, info.SchedulerMetrics)

	exit := 0
	select {
	case <-stopCtx.Done():
	case c := <-cp.failed():
		klog.Errorf("kube-local: %s exited unexpectedly: %v", c.name, c.err)
		exit = 1
	}
	cp.shutdown()
	return exit
}

// joinHostPort formats host:port, bracketing IPv6 addresses.
func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// freePort asks the kernel for an unused port on host.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", joinHostPort(host, 0))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
