package main

// The three control plane components, run in this process.
//
// Why not the cobra commands (NewAPIServerCommand, NewControllerManagerCommand,
// NewSchedulerCommand) with cmd.SetArgs + cmd.ExecuteContext:
//   - k8s.io/apiserver/pkg/server.SetupSignalContext may be called only once
//     per process (it closes a package-level channel: "panics when called
//     twice"). NewAPIServerCommand calls it when the command is built and the
//     kube-scheduler command calls it in RunE, so running both panics.
//   - The commands ignore the context given to ExecuteContext: kube-apiserver
//     runs on its signal context, kube-scheduler on a context cancelled only
//     by a signal, kube-controller-manager on context.Background(). None could
//     be stopped in the order this program needs (scheduler and
//     controller-manager first, then the apiserver, then etcd).
//   - Each RunE applies the process-global logging configuration
//     (k8s.io/component-base/logs/api/v1.ValidateAndApply), which refuses to
//     be applied a second time.
//
// So each component below does what its command's RunE does, using the same
// exported pieces (cmd/kube-apiserver/app/options + app.Run,
// cmd/kube-controller-manager/app/options + app.Run, cmd/kube-scheduler/app
// options + app.Setup + app.Run) — the pattern of upstream's in-process test
// servers in cmd/*/app/testing/testserver.go — with the command-line flags
// parsed by the components' own flag sets, so every argument means exactly
// what it means to the real binaries. The only thing set outside flags is a
// listener opened by this program, handed over instead of a port number so
// no other process can take the port between choosing and binding it.

import (
	"context"
	"fmt"
	"net"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/cache"
	cliflag "k8s.io/component-base/cli/flag"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// parseFlags parses args with all flag sets of a component, as its cobra
// command would (ContinueOnError: a bad flag is an error, not an exit).
func parseFlags(name string, nfs cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	return nil
}

// runAPIServer mirrors the RunE of cmd/kube-apiserver/app.NewAPIServerCommand.
func runAPIServer(ctx context.Context, args []string, ln net.Listener) error {
	s := apiserveroptions.NewServerRunOptions()
	if err := parseFlags("kube-apiserver", s.Flags(), args); err != nil {
		return err
	}
	s.SecureServing.Listener = ln
	// The cobra command's PersistentPreRunE: resolve feature gates and
	// emulation version from the (here: default) flags.
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	// Returns once ctx is cancelled and the server has shut down.
	return apiserverapp.Run(ctx, completed)
}

// runControllerManager mirrors the RunE of
// cmd/kube-controller-manager/app.NewControllerManagerCommand.
func runControllerManager(ctx context.Context, args []string, ln net.Listener) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	nfs := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &nfs
	if err := parseFlags("kube-controller-manager", nfs, args); err != nil {
		return err
	}
	s.SecureServing.Listener = ln
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return err
	}
	// With --leader-elect=false this runs the controllers until ctx is
	// cancelled, then waits up to --controller-shutdown-timeout for them.
	return kcmapp.Run(ctx, c.Complete())
}

// runScheduler mirrors the RunE (runCommand) of
// cmd/kube-scheduler/app.NewSchedulerCommand.
func runScheduler(ctx context.Context, args []string, ln net.Listener) error {
	opts := scheduleroptions.NewOptions()
	if err := parseFlags("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	opts.SecureServing.Listener = ln
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	informerName, err := cache.NewInformerName("kube-scheduler")
	if err != nil {
		return err
	}
	opts.InformerName = informerName
	cc, sched, err := schedulerapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	return schedulerapp.Run(ctx, cc, sched)
}
