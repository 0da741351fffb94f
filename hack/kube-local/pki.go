package main

// Certificates, keys and kubeconfigs for the local control plane.
//
// Everything is generated afresh at every start (a test cluster lives for
// one run) and written below DATA_DIR/pki. The layout mirrors what kubeadm
// sets up (one CA that signs serving and client certificates, identities
// taken from the certificate subject), only smaller: Kubernetes maps a client
// certificate's CN to the user name and its O fields to groups
// (k8s.io/apiserver/pkg/authentication/request/x509), so the built-in RBAC
// bindings for system:kube-controller-manager, system:kube-scheduler and the
// system:masters group apply without any extra objects.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// certValidity is long enough for any test run, short enough that nobody
// mistakes these files for something to keep.
const certValidity = 7 * 24 * time.Hour

// keyPair is a certificate with its private key and the paths it was written to.
type keyPair struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPEM  []byte
	keyPEM   []byte
	certFile string
	keyFile  string
}

// pki holds the paths of all generated files that the components are given.
type pki struct {
	dir string

	ca *keyPair

	// apiserver serves the Kubernetes API; kubeScheduler and
	// kubeControllerManager are the serving certificates of the two
	// components' own HTTPS ports (/healthz, /metrics), so a test can verify
	// them against ca.crt instead of skipping verification.
	apiserver             *keyPair
	kubeScheduler         *keyPair
	kubeControllerManager *keyPair

	// The front proxy (request header) CA and the client certificate the
	// apiserver presents when it proxies to aggregated APIs. Not for
	// lvmpin's sake: the apiserver publishes this CA in ConfigMap
	// kube-system/extension-apiserver-authentication, and the scheduler's
	// and controller-manager's delegated authentication
	// (--authentication-kubeconfig) log an error at start when it is
	// missing. kubeadm sets up the same pair.
	frontProxyCA     *keyPair
	frontProxyClient *keyPair

	// Client certificates, one per identity.
	admin                       *keyPair
	kubeControllerManagerClient *keyPair
	kubeSchedulerClient         *keyPair

	// Service account token signing key: the private half signs tokens in
	// the apiserver (TokenRequest) and in the controller manager (legacy
	// token Secrets); the public half verifies them.
	saKeyFile    string
	saPubKeyFile string
}

// newPKI generates every key and certificate and writes them below dir.
func newPKI(dir string, serving []string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	var err error

	if p.ca, err = p.issue("ca", pkix.Name{CommonName: "kube-local-ca"}, nil, nil, true); err != nil {
		return nil, err
	}

	// The apiserver is reached as 127.0.0.1 / localhost by tests, and as the
	// in-cluster names by anything that follows the kubernetes Service
	// (10.0.0.1 is the first address of --service-cluster-ip-range).
	apiNames := append([]string{
		"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "10.0.0.1",
	}, serving...)
	if p.apiserver, err = p.issue("apiserver", pkix.Name{CommonName: "kube-apiserver"},
		apiNames, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, false); err != nil {
		return nil, err
	}
	if p.kubeScheduler, err = p.issue("kube-scheduler-serving", pkix.Name{CommonName: "kube-scheduler"},
		serving, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, false); err != nil {
		return nil, err
	}
	if p.kubeControllerManager, err = p.issue("kube-controller-manager-serving", pkix.Name{CommonName: "kube-controller-manager"},
		serving, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, false); err != nil {
		return nil, err
	}

	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if p.frontProxyCA, err = p.issue("front-proxy-ca", pkix.Name{CommonName: "kube-local-front-proxy-ca"}, nil, nil, true); err != nil {
		return nil, err
	}
	if p.frontProxyClient, err = p.issueBy(p.frontProxyCA, "front-proxy-client", pkix.Name{CommonName: "front-proxy-client"},
		nil, client); err != nil {
		return nil, err
	}
	// system:masters is bound to cluster-admin by the bootstrap RBAC policy
	// and also bypasses authorization entirely, like kubeadm's admin.conf.
	if p.admin, err = p.issue("admin", pkix.Name{CommonName: "kube-local-admin", Organization: []string{"system:masters"}},
		nil, client, false); err != nil {
		return nil, err
	}
	// These user names are the subjects of the bootstrap ClusterRoleBindings
	// system:kube-controller-manager and system:kube-scheduler
	// (k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy).
	if p.kubeControllerManagerClient, err = p.issue("kube-controller-manager-client", pkix.Name{CommonName: "system:kube-controller-manager"},
		nil, client, false); err != nil {
		return nil, err
	}
	if p.kubeSchedulerClient, err = p.issue("kube-scheduler-client", pkix.Name{CommonName: "system:kube-scheduler"},
		nil, client, false); err != nil {
		return nil, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	p.saKeyFile = filepath.Join(dir, "sa.key")
	p.saPubKeyFile = filepath.Join(dir, "sa.pub")
	if err := writeFile(p.saKeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(p.saPubKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// issue creates an ECDSA P-256 key and a certificate for it, signed by the
// main CA (or self-signed when isCA), and writes NAME.crt / NAME.key. Entries
// of names that parse as IP addresses become IP SANs, the rest DNS SANs.
func (p *pki) issue(name string, subject pkix.Name, names []string, usage []x509.ExtKeyUsage, isCA bool) (*keyPair, error) {
	if isCA {
		return p.create(nil, name, subject, names, usage)
	}
	return p.create(p.ca, name, subject, names, usage)
}

// issueBy is issue with another CA than the main one.
func (p *pki) issueBy(ca *keyPair, name string, subject pkix.Name, names []string, usage []x509.ExtKeyUsage) (*keyPair, error) {
	return p.create(ca, name, subject, names, usage)
}

// create makes the key pair; ca nil means a self-signed CA certificate.
func (p *pki) create(ca *keyPair, name string, subject pkix.Name, names []string, usage []x509.ExtKeyUsage) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		// Tolerate small clock differences between this process and the
		// test that reads the files.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	parent, signer := tmpl, crypto.Signer(key)
	if ca == nil {
		tmpl.IsCA = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign %s certificate: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{
		cert:     cert,
		key:      key,
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		certFile: filepath.Join(p.dir, name+".crt"),
		keyFile:  filepath.Join(p.dir, name+".key"),
	}
	if err := writeFile(kp.certFile, kp.certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(kp.keyFile, kp.keyPEM, 0o600); err != nil {
		return nil, err
	}
	return kp, nil
}

// writeKubeconfig writes a self-contained kubeconfig (certificates inline)
// that reaches server as the identity of client.
func (p *pki) writeKubeconfig(path, server, user string, client *keyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kube-local"] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: p.ca.certPEM,
	}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{
		ClientCertificateData: client.certPEM,
		ClientKeyData:         client.keyPEM,
	}
	cfg.Contexts["kube-local"] = &clientcmdapi.Context{Cluster: "kube-local", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "kube-local"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return writeFile(path, data, 0o600)
}

// writeFile replaces path atomically, so a reader never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
