// Package harness runs the add-on end to end on real parts on this machine: kube-apiserver and
// etcd for the hub and for each managed cluster, OCM's hub and klusterlet controllers
// (test/ocm), the add-on manager binary, the Argo CD agent principal (argocd-agent v0.9.0), and
// for each managed cluster a real node (test/node) that runs the agent's pod from the
// Deployment the add-on delivers. The e2e tests and `make demo` both drive it.
//
// Each managed cluster has its own API server: the agent's ClusterRole and ClusterRoleBinding
// are cluster-scoped with fixed names, so two clusters' agents cannot share one.
package harness
