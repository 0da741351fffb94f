package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// controlPlane is the state of one run.
type controlPlane struct {
	opts    options
	dataDir string
	pki     *pki

	etcd       *embed.Etcd
	apiserver  *component
	kcm        *component
	scheduler  *component
	components []*component

	// apiserverReady: /readyz passed, so all post-start hooks have finished.
	apiserverReady bool

	apiserverURL         string
	schedulerURL         string
	controllerManagerURL string
}

// start brings the control plane up and returns when all of it is ready,
// or with an error (ctx cancelled: a signal arrived).
func (cp *controlPlane) start(ctx context.Context) error {
	o := cp.opts
	// Clients connect to the bind address, or to loopback when the
	// components listen on every address.
	host := o.bindAddress
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}

	// Listeners first: their ports go into the URLs, kubeconfigs and
	// certificates, and holding them until the components take them over
	// means no other process can grab a port in between.
	apiLn, err := net.Listen("tcp", joinHostPort(o.bindAddress, o.apiserverPort))
	if err != nil {
		return fmt.Errorf("apiserver listener: %w", err)
	}
	kcmLn, err := net.Listen("tcp", joinHostPort(o.bindAddress, 0))
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("controller-manager listener: %w", err)
	}
	schedLn, err := net.Listen("tcp", joinHostPort(o.bindAddress, 0))
	if err != nil {
		apiLn.Close()
		kcmLn.Close()
		return fmt.Errorf("scheduler listener: %w", err)
	}
	port := func(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }
	cp.apiserverURL = "https://" + joinHostPort(host, port(apiLn))
	cp.controllerManagerURL = "https://" + joinHostPort(host, port(kcmLn))
	cp.schedulerURL = "https://" + joinHostPort(host, port(schedLn))
	apiPort, kcmPort, schedPort := port(apiLn), port(kcmLn), port(schedLn)

	serving := []string{"localhost", "127.0.0.1", "::1"}
	if host != "127.0.0.1" && host != "localhost" && host != "::1" {
		serving = append(serving, host)
	}
	pkiDir := filepath.Join(cp.dataDir, "pki")
	if cp.pki, err = newPKI(pkiDir, serving); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	p := cp.pki
	adminKubeconfig := filepath.Join(cp.dataDir, "admin.kubeconfig")
	kcmKubeconfig := filepath.Join(cp.dataDir, "controller-manager.kubeconfig")
	schedKubeconfig := filepath.Join(cp.dataDir, "scheduler.kubeconfig")
	for _, k := range []struct {
		path, user string
		kp         *keyPair
	}{
		{adminKubeconfig, "admin", p.admin},
		{kcmKubeconfig, "system:kube-controller-manager", p.kubeControllerManagerClient},
		{schedKubeconfig, "system:kube-scheduler", p.kubeSchedulerClient},
	} {
		if err := p.writeKubeconfig(k.path, cp.apiserverURL, k.user, k.kp); err != nil {
			return fmt.Errorf("kubeconfig: %w", err)
		}
	}

	schedConfig, extenders, err := rewriteSchedulerConfig(o.schedulerConfig, schedKubeconfig, o.extenderURL)
	if err != nil {
		return fmt.Errorf("scheduler config: %w", err)
	}
	if o.extenderURL != "" && extenders == 0 {
		return fmt.Errorf("--extender-url given but --scheduler-config %q has no extenders", o.schedulerConfig)
	}
	schedConfigFile := filepath.Join(cp.dataDir, "scheduler-config.yaml")
	if err := writeFile(schedConfigFile, schedConfig, 0o644); err != nil {
		return err
	}

	// a. etcd. Its ports are chosen by bind-and-release (it takes URLs, not
	// listeners); retry if another process won the race for one.
	var etcdURL string
	for attempt := 1; ; attempt++ {
		cp.etcd, etcdURL, err = startEtcd(cp.dataDir, host)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			return err
		}
		klog.Warningf("kube-local: %v; retrying", err)
	}

	// c. kube-apiserver.
	apiArgs := apiserverArgs(cp.dataDir, p, etcdURL, o.bindAddress, apiPort)
	cp.apiserver = cp.startComponent("kube-apiserver", func(ctx context.Context) error {
		return runAPIServer(ctx, apiArgs, apiLn)
	})
	tr, err := cp.transport(true)
	if err != nil {
		return err
	}
	if err := cp.waitHTTP(ctx, "kube-apiserver", tr, cp.apiserverURL+"/readyz", 2*time.Minute); err != nil {
		return err
	}
	cp.apiserverReady = true

	// d, e. kube-controller-manager and kube-scheduler, in parallel.
	kcmArgs := controllerManagerArgs(p, kcmKubeconfig, o.bindAddress, kcmPort, o.controllers)
	cp.kcm = cp.startComponent("kube-controller-manager", func(ctx context.Context) error {
		return runControllerManager(ctx, kcmArgs, kcmLn)
	})
	schedArgs := schedulerArgs(p, schedKubeconfig, schedConfigFile, o.bindAddress, schedPort)
	cp.scheduler = cp.startComponent("kube-scheduler", func(ctx context.Context) error {
		return runScheduler(ctx, schedArgs, schedLn)
	})

	// f. Readiness. The component ports are probed without a client
	// certificate on purpose: that is how a test scrapes /metrics.
	anon, err := cp.transport(false)
	if err != nil {
		return err
	}
	for _, c := range []struct{ what, url string }{
		{"kube-controller-manager", cp.controllerManagerURL + "/healthz"},
		{"kube-scheduler", cp.schedulerURL + "/healthz"},
		// /readyz also covers "informers synced, event handlers registered"
		// (sched-handler-sync): from then on a new pod is seen.
		{"kube-scheduler", cp.schedulerURL + "/readyz"},
		{"kube-scheduler", cp.schedulerURL + "/metrics"},
	} {
		if err := cp.waitHTTP(ctx, c.what, anon, c.url, 2*time.Minute); err != nil {
			return err
		}
	}
	// Pods can be created in "default" only once the serviceaccount
	// controller made its "default" ServiceAccount: the ServiceAccount
	// admission plugin rejects pods whose service account does not exist.
	// Waiting here saves every test from retrying its first pod.
	restCfg, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	return cp.poll(ctx, "ServiceAccount default/default", time.Minute, func() error {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// apiserverArgs are the kube-apiserver flags
// (cmd/kube-apiserver/app/options, k8s.io/apiserver/pkg/server/options).
func apiserverArgs(dataDir string, p *pki, etcdURL, bindAddress string, port int) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + bindAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + p.dir,
		"--tls-cert-file=" + p.apiserver.certFile,
		"--tls-private-key-file=" + p.apiserver.keyFile,
		// Client certificates signed by the CA authenticate: CN = user,
		// O = groups.
		"--client-ca-file=" + p.ca.certFile,
		// Request header authentication for the aggregation layer, as
		// kubeadm configures it (see pki.frontProxyCA for why).
		"--requestheader-client-ca-file=" + p.frontProxyCA.certFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.frontProxyClient.certFile,
		"--proxy-client-key-file=" + p.frontProxyClient.keyFile,
		// As in kubeadm clusters. The Node authorizer only matters for
		// system:node:* users, which tests may use to act as a kubelet.
		"--authorization-mode=Node,RBAC",
		// Service account tokens (TokenRequest, projected volumes) are signed
		// here; kube-controller-manager's per-controller credentials
		// (--use-service-account-credentials) depend on it.
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.saPubKeyFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// The default admission chain stays (pkg/kubeapiserver/options
		// DefaultOffAdmissionPlugins: NamespaceLifecycle, ServiceAccount,
		// DefaultStorageClass, PersistentVolumeClaimResize,
		// StorageObjectInUseProtection, ValidatingAdmissionPolicy, ...)
		// except TaintNodesByCondition: it puts
		// node.kubernetes.io/not-ready:NoSchedule on every Node at creation,
		// for the kubelet to remove once it reports Ready. There is no
		// kubelet here, so Nodes created by tests would stay unschedulable.
		"--disable-admission-plugins=TaintNodesByCondition",
		// The apiserver advertises its bind address, 127.0.0.1. Endpoint
		// validation rejects loopback addresses, so the "kubernetes"
		// Service's endpoints could never be written and the reconciler
		// would log errors forever; upstream's test server
		// (cmd/kube-apiserver/app/testing) turns it off the same way.
		"--endpoint-reconciler-type=none",
		// All API groups lvmpin uses (storage.k8s.io/v1 incl.
		// CSIStorageCapacity, coordination.k8s.io/v1,
		// admissionregistration.k8s.io/v1) are GA and served by default, so
		// no --runtime-config.
	}
}

// controllerManagerArgs are the kube-controller-manager flags
// (cmd/kube-controller-manager/app/options).
func controllerManagerArgs(p *pki, kubeconfig, bindAddress string, port int, controllers string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		// Delegated authentication/authorization for its own HTTPS port, as
		// deployed by kubeadm; /healthz stays open to anonymous clients
		// (default --authorization-always-allow-paths).
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=" + bindAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p.kubeControllerManager.certFile,
		"--tls-private-key-file=" + p.kubeControllerManager.keyFile,
		"--leader-elect=false",
		// Each controller acts as its own ServiceAccount in kube-system with
		// the bootstrap RBAC roles (system:controller:*), as in real
		// clusters, so missing permissions show up here too.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p.saKeyFile,
		"--root-ca-file=" + p.ca.certFile,
		"--controllers=" + controllers,
		// Shutdown budget; the default is 10s.
		"--controller-shutdown-timeout=3s",
	}
}

// schedulerArgs are the kube-scheduler flags (cmd/kube-scheduler/app/options).
// With --config, kube-scheduler takes its own settings only from the file
// (see rewriteSchedulerConfig); the flags here are the serving and
// authentication ones, which the file cannot hold.
func schedulerArgs(p *pki, kubeconfig, configFile, bindAddress string, port int) []string {
	return []string{
		"--config=" + configFile,
		"--bind-address=" + bindAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p.kubeScheduler.certFile,
		"--tls-private-key-file=" + p.kubeScheduler.keyFile,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		// Anonymous requests are authenticated (as system:anonymous) by
		// default; these paths then skip the SubjectAccessReview, so a test
		// can scrape /metrics with a plain HTTPS GET and no credentials.
		// Other paths still need a client certificate or token with RBAC.
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
		// Honoured even with --config; also set in the rewritten file.
		"--leader-elect=false",
	}
}

func (cp *controlPlane) startComponent(name string, run func(ctx context.Context) error) *component {
	c := startComponent(name, run)
	cp.components = append(cp.components, c)
	return c
}

// failed delivers the first component that returns; while the control plane
// is meant to run, any return is a failure.
func (cp *controlPlane) failed() <-chan *component {
	ch := make(chan *component, len(cp.components)+1)
	for _, c := range cp.components {
		go func() {
			<-c.done
			ch <- c
		}()
	}
	if cp.etcd != nil {
		etcdComp := &component{name: "etcd", done: make(chan struct{})}
		go func() {
			select {
			case etcdComp.err = <-cp.etcd.Err():
			case <-cp.etcd.Server.StopNotify():
				etcdComp.err = fmt.Errorf("etcd server stopped")
			}
			ch <- etcdComp
		}()
	}
	return ch
}

// shutdown stops what was started, in reverse dependency order: the
// apiserver's clients first (so they do not log connection errors while it
// goes away), then the apiserver, then its storage. Each step has a budget
// so the whole takes well under 10s.
func (cp *controlPlane) shutdown() {
	start := time.Now()
	var clients []*component
	for _, c := range []*component{cp.scheduler, cp.kcm} {
		if c != nil {
			c.cancel()
			clients = append(clients, c)
		}
	}
	for _, c := range clients {
		c.stop(4 * time.Second)
	}
	if cp.apiserver != nil {
		cp.apiserver.stop(5 * time.Second)
	}
	if cp.etcd != nil {
		done := make(chan struct{})
		go func() {
			cp.etcd.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			klog.Errorf("kube-local: etcd did not stop within 3s")
		}
	}
	klog.Infof("kube-local: stopped in %s", time.Since(start).Round(time.Millisecond))
}

// transport trusts the generated CA; withAdmin presents the admin client
// certificate.
func (cp *controlPlane) transport(withAdmin bool) (*http.Transport, error) {
	pool := x509.NewCertPool()
	pool.AddCert(cp.pki.ca.cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withAdmin {
		cert, err := tls.X509KeyPair(cp.pki.admin.certPEM, cp.pki.admin.keyPEM)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, nil
}

// waitHTTP polls url until it answers 200.
func (cp *controlPlane) waitHTTP(ctx context.Context, what string, tr *http.Transport, url string, timeout time.Duration) error {
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	return cp.poll(ctx, what+" "+url, timeout, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	})
}

// poll calls check every 200ms until it succeeds, a started component
// exits, ctx is cancelled or timeout passes.
func (cp *controlPlane) poll(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		for _, c := range cp.components {
			select {
			case <-c.done:
				return fmt.Errorf("%s exited while waiting for %s: %v", c.name, what, c.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
