package argocd

import (
	"bufio"
	"context"
	"fmt"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// RedisServerEnv may name the redis-server binary; by default it is looked up on PATH
// (Debian package redis-server: `apt-get install -y redis-server`).
const RedisServerEnv = "REDIS_SERVER_BIN"

// StartRedis starts a redis-server on a free port of host (127.0.0.1 if empty), without
// persistence and without a password, with dir as its working directory. It returns the address
// (host:port) and a stop function (also called when ctx ends).
func StartRedis(ctx context.Context, dir, host string) (addr string, stop func(), err error) {
	if host == "" {
		host = "127.0.0.1"
	}
	bin, err := redisBinary()
	if err != nil {
		return "", nil, err
	}
	// A port found free can be taken before redis binds it; retry a few times.
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := proc.FreePorts(1)
		if err != nil {
			return "", nil, err
		}
		addr = net.JoinHostPort(host, strconv.Itoa(ports[0]))
		p, err := proc.Start(ctx, "redis-"+strconv.Itoa(ports[0]), dir, bin,
			"--bind", host, "--port", strconv.Itoa(ports[0]),
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
		if err != nil {
			return "", nil, err
		}
		err = p.WaitFor(ctx, 15*time.Second, "answering PING", func() error { return redisPing(addr) })
		if err == nil {
			return addr, p.Stop, nil
		}
		p.Stop()
		if !strings.Contains(p.Log(), "Address already in use") {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("redis-server: no free port after 3 attempts")
}

func redisBinary() (string, error) {
	name := "redis-server"
	if v := os.Getenv(RedisServerEnv); v != "" {
		name = v
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (install Debian's redis-server: apt-get install -y redis-server): %w", name, err)
	}
	return bin, nil
}

// redisPing sends an inline PING and expects +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}
