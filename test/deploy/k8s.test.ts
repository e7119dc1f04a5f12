/**
 * The Kubernetes manifests (deploy/k8s, docs/spec.md §10) rendered by `kubectl kustomize`, the base and
 * the example overlay, checked against the server itself: the settings they pass go through
 * loadConfig (so a change of a default or a bound there breaks this test), the probe paths answer
 * 200 on a real server, and the objects reference each other consistently. Skipped, saying so,
 * when kubectl is not installed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { DRAIN_MARGIN_MS, loadConfig } from '../../src/config';
import type { Config } from '../../src/config';
import { ConfigError } from '../../src/errors';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const ROOT = path.join(__dirname, '..', '..', '..');

function kubectlMissing(): string | false {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'kubectl is not installed (it renders deploy/k8s with `kubectl kustomize`): manifest tests skipped';
  }
}
const KUBECTL_MISSING = kubectlMissing();

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered YAML is checked field by field */
type K8s = Record<string, any>;

function render(dir: string): K8s[] {
  const text = execFileSync('kubectl', ['kustomize', path.join(ROOT, dir)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return parseAllDocuments(text).map((doc) => {
    assert.equal(doc.errors.length, 0, String(doc.errors[0]));
    return doc.toJS() as K8s;
  });
}

/** The one object of this kind and name (and namespace, when given). */
function one(objects: K8s[], kind: string, name: string, namespace?: string): K8s {
  const found = objects.filter(
    (o) =>
      o.kind === kind &&
      o.metadata.name === name &&
      (namespace === undefined || o.metadata.namespace === namespace),
  );
  assert.equal(found.length, 1, `exactly one ${kind} ${name}, got ${found.length}`);
  return found[0];
}

/** Whether a label selector (matchLabels, or a Service's plain map) selects these labels. */
function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([key, value]) => labels[key] === value);
}

/** A probe's or a Service's port (number or name) as the container's port number. */
function portOf(container: K8s, port: number | string): number {
  if (typeof port === 'number') return port;
  const named = (container.ports as K8s[]).find((p) => p.name === port);
  assert.ok(named, `container ${container.name} has a port named ${port}`);
  return named.containerPort as number;
}

/** The server's environment as the pods get it: its envFrom ConfigMaps and Secrets, then env. */
function environment(objects: K8s[], namespace: string, container: K8s): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of (container.envFrom ?? []) as K8s[]) {
    if (from.configMapRef) {
      Object.assign(env, one(objects, 'ConfigMap', from.configMapRef.name, namespace).data);
    } else if (from.secretRef) {
      const secret = one(objects, 'Secret', from.secretRef.name, namespace);
      for (const [key, value] of Object.entries((secret.data ?? {}) as Record<string, string>)) {
        env[key] = Buffer.from(value, 'base64').toString('utf8');
      }
      Object.assign(env, secret.stringData ?? {});
    }
  }
  for (const entry of (container.env ?? []) as K8s[]) env[entry.name] = entry.value;
  return env;
}

/** How long the preStop hook keeps the pod serving before SIGTERM, ms. */
function preStopMs(container: K8s): number {
  const hook = container.lifecycle?.preStop as K8s | undefined;
  if (hook === undefined) return 0;
  if (hook.sleep) return Number(hook.sleep.seconds) * 1000;
  const command = hook.exec?.command as string[];
  assert.deepEqual(command.slice(0, 1), ['sleep'], `preStop is a sleep: ${command.join(' ')}`);
  assert.match(command[1], /^\d+$/);
  return Number(command[1]) * 1000;
}

const RENDERS = [
  { dir: 'deploy/k8s', namespace: undefined as string | undefined },
  { dir: 'deploy/k8s/overlays/example', namespace: 'koa-faas' },
];

const SERVER = 'koa-faas';
const REDIS = 'koa-faas-redis';

void describe('deploy/k8s manifests', { skip: KUBECTL_MISSING }, () => {
  // One real server answers the probe paths the manifests name.
  let live: TestServer;
  before(async () => {
    live = await startServer();
  });
  after(async () => {
    await live?.close();
  });

  for (const { dir, namespace } of RENDERS) {
    void describe(`kubectl kustomize ${dir}`, () => {
      let objects: K8s[];
      let deployment: K8s;
      let pod: K8s;
      let server: K8s;
      let env: Record<string, string>;
      let config: Readonly<Config>;
      before(() => {
        objects = render(dir);
        deployment = one(objects, 'Deployment', SERVER, namespace);
        pod = deployment.spec.template;
        const containers = pod.spec.containers as K8s[];
        assert.equal(containers.length, 1, 'the server pod runs one container');
        server = containers[0];
        env = environment(objects, namespace as string, server);
        // Every setting the manifests pass is one the server accepts (ADMIN_TOKEN: see below).
        config = loadConfig({ ...env, ADMIN_TOKEN: undefined });
      });

      void test('every object lands in the namespace of the overlay', () => {
        for (const o of objects) {
          if (o.kind === 'Namespace') continue;
          assert.equal(o.metadata.namespace, namespace, `${o.kind} ${o.metadata.name}`);
        }
      });

      void test('the probes name server routes that answer 200, on the container port = PORT', async () => {
        const probes = [
          ['readinessProbe', '/_/ready'],
          ['livenessProbe', '/_/health'],
          ['startupProbe', undefined],
        ] as const;
        const port = (server.ports as K8s[]).find((p) => p.name === 'http');
        assert.ok(port, 'the server container names its port http');
        assert.equal(port.containerPort, config.port, 'containerPort is the PORT the server reads');
        assert.notEqual(config.port, 0, 'PORT is fixed, not "any free port"');
        for (const [kind, expected] of probes) {
          const probe = server[kind] as K8s | undefined;
          if (expected !== undefined) assert.ok(probe, `the server has a ${kind}`);
          if (probe === undefined) continue;
          if (expected !== undefined) assert.equal(probe.httpGet.path, expected, kind);
          assert.equal(portOf(server, probe.httpGet.port), config.port, `${kind} port`);
          const res = await live.request.get(probe.httpGet.path as string);
          assert.equal(res.status, 200, `${kind} ${probe.httpGet.path} on a live server`);
        }
      });

      void test('the grace period covers the preStop sleep, the drain and its margin', () => {
        // The drain lets the longest invocation a function may ask for finish...
        assert.ok(
          config.shutdownGraceMs >= config.maxTimeoutMs,
          `SHUTDOWN_GRACE_MS ${config.shutdownGraceMs} >= MAX_TIMEOUT_MS ${config.maxTimeoutMs}`,
        );
        // ...and Kubernetes waits for it before SIGKILL.
        const needed = preStopMs(server) + config.shutdownGraceMs + DRAIN_MARGIN_MS;
        const grace = Number(pod.spec.terminationGracePeriodSeconds) * 1000;
        assert.ok(grace >= needed, `terminationGracePeriodSeconds ${grace} ms >= ${needed} ms`);
        assert.ok(preStopMs(server) > 0, 'a preStop sleep lets endpoints drain before SIGTERM');
      });

      void test('every container: non-root, read-only root, no privilege escalation, no capabilities, requests and limits', () => {
        const deployments = objects.filter((o) => o.kind === 'Deployment');
        assert.deepEqual(deployments.map((d) => d.metadata.name as string).sort(), [SERVER, REDIS]);
        for (const d of deployments) {
          const spec = d.spec.template.spec as K8s;
          for (const c of spec.containers as K8s[]) {
            const where = `${d.metadata.name}/${c.name}`;
            const sc = c.securityContext as K8s;
            assert.equal(sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot, true, where);
            assert.ok((sc.runAsUser ?? spec.securityContext?.runAsUser) > 0, where);
            assert.equal(sc.readOnlyRootFilesystem, true, where);
            assert.equal(sc.allowPrivilegeEscalation, false, where);
            assert.deepEqual(sc.capabilities.drop, ['ALL'], where);
            for (const bound of ['requests', 'limits']) {
              for (const resource of ['cpu', 'memory']) {
                assert.ok(c.resources?.[bound]?.[resource], `${where}: ${bound}.${resource}`);
              }
            }
          }
        }
      });

      void test('the server runs as the image user and writes only to emptyDir volumes', () => {
        // The Dockerfile's run stage ends as `node`, uid 1000 in node:*-bookworm-slim.
        const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
        assert.match(dockerfile, /^USER node$/m);
        assert.match(dockerfile, /^FROM node:\d+-bookworm-slim$/m);
        assert.equal(server.securityContext.runAsUser ?? pod.spec.securityContext.runAsUser, 1000);
        const volumes = new Map((pod.spec.volumes as K8s[]).map((v) => [v.name as string, v]));
        const mounts = new Map(
          (server.volumeMounts as K8s[]).map((m) => [m.mountPath as string, m.name as string]),
        );
        for (const dirPath of [config.dataDir, '/tmp']) {
          const volume = volumes.get(mounts.get(dirPath) as string);
          assert.ok(volume?.emptyDir, `${dirPath} is an emptyDir volume`);
        }
        assert.ok(!mounts.has(config.functionsDir), 'FUNCTIONS_DIR comes from the image');
      });

      void test('one server image, set through kustomize', () => {
        const images = new Set(
          objects
            .filter((o) => o.kind === 'Deployment' && o.metadata.name !== REDIS)
            .flatMap((d) => (d.spec.template.spec.containers as K8s[]).map((c) => c.image)),
        );
        assert.deepEqual([...images], ['koa-faas:latest']);
      });

      void test('the Deployment, the Service, the PDB and the HPA select the same pods', () => {
        const labels = pod.metadata.labels as Record<string, string>;
        assert.ok(selects(deployment.spec.selector.matchLabels, labels), 'Deployment selector');
        assert.equal(deployment.spec.replicas, 2);
        const service = one(objects, 'Service', SERVER, namespace);
        assert.ok(selects(service.spec.selector, labels), 'Service selector');
        for (const p of service.spec.ports as K8s[]) {
          assert.equal(portOf(server, p.targetPort), config.port, 'Service targetPort');
        }
        const pdb = one(objects, 'PodDisruptionBudget', SERVER, namespace);
        assert.equal(pdb.apiVersion, 'policy/v1');
        assert.ok(selects(pdb.spec.selector.matchLabels, labels), 'PDB selector');
        assert.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < deployment.spec.replicas);
        const hpa = one(objects, 'HorizontalPodAutoscaler', SERVER, namespace);
        assert.equal(hpa.apiVersion, 'autoscaling/v2');
        assert.deepEqual(hpa.spec.scaleTargetRef, {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          name: SERVER,
        });
        assert.equal(hpa.spec.minReplicas, deployment.spec.replicas);
        assert.ok(
          (hpa.spec.metrics as K8s[]).some(
            (m) => m.type === 'Resource' && m.resource.name === 'cpu',
          ),
          'the HPA scales on CPU',
        );
      });

      void test('REDIS_URL names the Redis Service and its port, which reach the Redis pod', () => {
        assert.ok(config.redisUrl, 'REDIS_URL is set: the replicas share one Redis');
        const url = new URL(config.redisUrl);
        const service = one(objects, 'Service', REDIS, namespace);
        const ns = namespace ?? 'default';
        const names = [
          REDIS,
          `${REDIS}.${ns}`,
          `${REDIS}.${ns}.svc`,
          `${REDIS}.${ns}.svc.cluster.local`,
        ];
        assert.ok(names.includes(url.hostname), `REDIS_URL host ${url.hostname}`);
        const port = (service.spec.ports as K8s[]).find((p) => p.port === Number(url.port || 6379));
        assert.ok(port, `the Redis Service has port ${url.port}`);
        const redis = one(objects, 'Deployment', REDIS, namespace);
        assert.ok(selects(service.spec.selector, redis.spec.template.metadata.labels));
        const container = (redis.spec.template.spec.containers as K8s[])[0];
        assert.equal(portOf(container, port.targetPort), 6379);
      });

      void test('Redis runs append-only with noeviction, from the mounted redis.conf', () => {
        const redis = one(objects, 'Deployment', REDIS, namespace);
        const spec = redis.spec.template.spec as K8s;
        const container = (spec.containers as K8s[])[0];
        const conf = (container.command as string[]).find((arg) => arg.endsWith('.conf'));
        assert.ok(conf, 'redis-server is started with a config file');
        const mount = (container.volumeMounts as K8s[]).find(
          (m) => path.posix.dirname(conf) === m.mountPath,
        );
        assert.ok(mount, `${conf} is mounted`);
        const volume = (spec.volumes as K8s[]).find((v) => v.name === mount.name);
        const configMap = one(objects, 'ConfigMap', volume?.configMap.name as string, namespace);
        const text = configMap.data[path.posix.basename(conf)] as string;
        const settings = new Map(
          text
            .split('\n')
            .map((line) => line.trim())
            .filter((line) => line !== '' && !line.startsWith('#'))
            .map((line) => [line.split(/\s+/)[0], line.split(/\s+/).slice(1).join(' ')]),
        );
        assert.equal(settings.get('appendonly'), 'yes');
        assert.equal(settings.get('maxmemory-policy'), 'noeviction');
        const data = (container.volumeMounts as K8s[]).find(
          (m) => m.mountPath === settings.get('dir'),
        );
        assert.ok(data, 'the append-only file lives on a volume');
        const claim = (spec.volumes as K8s[]).find(
          (v) => v.name === data.name,
        )?.persistentVolumeClaim;
        assert.ok(claim, 'that volume is a PersistentVolumeClaim');
        one(objects, 'PersistentVolumeClaim', claim.claimName as string, namespace);
        assert.equal(redis.spec.replicas, 1);
        assert.equal(redis.spec.strategy.type, 'Recreate', 'never two Redis on one file');
      });

      void test('the admin token comes from a Secret; the placeholder stops the server', () => {
        assert.ok(
          (server.envFrom as K8s[]).some((f) => f.secretRef),
          'ADMIN_TOKEN comes from a Secret',
        );
        // Never in a ConfigMap, which anyone who may read the namespace's settings reads.
        for (const from of server.envFrom as K8s[]) {
          if (!from.configMapRef) continue;
          const data = one(objects, 'ConfigMap', from.configMapRef.name as string, namespace).data;
          assert.ok(!('ADMIN_TOKEN' in data), 'ADMIN_TOKEN is not in a ConfigMap');
        }
        assert.ok(env.ADMIN_TOKEN, 'the Secret holds ADMIN_TOKEN');
        if (dir === 'deploy/k8s' || env.ADMIN_TOKEN === 'CHANGE-ME') {
          assert.throws(
            () => loadConfig(env),
            (err) => err instanceof ConfigError && /ADMIN_TOKEN/.test(err.message),
          );
        } else {
          loadConfig(env);
        }
      });
    });
  }
});
