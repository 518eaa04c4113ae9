/**
 * What deploy/monitoring/ asks of Prometheus: the PrometheusRule's alerts and the dashboard's
 * queries, and the metric names they use.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const RULE_FILE = `${ROOT}deploy/monitoring/prometheusrule.yaml`;
export const DASHBOARD_FILE = `${ROOT}deploy/monitoring/grafana-dashboard.json`;
/** Built by scripts/peers.sh: Prometheus' own rule-file check (as `promtool check rules`). */
export const PROMRULES = `${ROOT}.peers/promrules/promrules`;

export const havePromrules = (): boolean => existsSync(PROMRULES);

/**
 * Metrics the rules use that no code exports yet, and why: each alert on them must say so in its
 * description. None today (defragmentation exports its own).
 */
export const FUTURE_METRICS: Record<string, string> = {};

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

interface RuleGroup {
  name: string;
  rules: AlertRule[];
}

export interface PrometheusRule {
  apiVersion: string;
  kind: string;
  spec: { groups: RuleGroup[] };
}

export function prometheusRule(): PrometheusRule {
  return parse(readFileSync(RULE_FILE, 'utf8')) as PrometheusRule;
}

export function alertRules(): AlertRule[] {
  return prometheusRule().spec.groups.flatMap((g) => g.rules);
}

export interface DashboardTarget {
  expr: string;
  datasource?: { uid?: string };
}

export interface DashboardPanel {
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: DashboardTarget[];
}

export interface Dashboard {
  templating: { list: { name: string; type: string; query: unknown }[] };
  panels: DashboardPanel[];
}

export function dashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
}

/** Every query of every panel, with the panel's title. */
export function dashboardQueries(): { panel: string; expr: string }[] {
  return dashboard().panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

/** The query as Prometheus receives it once Grafana has put in its variables. */
export function withVariablesSet(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replace(/\$(cluster|job|pod)\b/g, '.*');
}

/** Our metric names in a PromQL expression; a histogram's series name its family. */
export function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/etcd_backup_sidecar_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')))];
}

/** Metric families a /metrics page declares (`# TYPE` lines: a family without samples is declared too). */
export function declaredMetrics(exposition: string): Set<string> {
  return new Set([...exposition.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1] as string));
}
