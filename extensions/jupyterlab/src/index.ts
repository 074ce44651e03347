/**
 * CANDLE Lab in JupyterLab: a launcher card, a left sidebar listing experiments live,
 * command-palette commands, and the live dashboard (the Panel app, served through
 * jupyter-server-proxy at `<base_url>candle-lab-app/`) in main-area tabs.
 * Data comes from the server extension's REST API (`<base_url>candle-lab/api/...`).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IFrame,
  MainAreaWidget,
  WidgetTracker
} from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ILauncher } from '@jupyterlab/launcher';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

const PLUGIN_ID = 'candle-lab-jupyterlab:plugin';
const CATEGORY = 'CANDLE Lab';

namespace CommandIDs {
  export const newExperiment = 'candle-lab:new-experiment';
  export const openDashboard = 'candle-lab:open-dashboard';
  export const refresh = 'candle-lab:refresh';
  export const showSidebar = 'candle-lab:show-experiments';
}

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="4" width="8" height="3" rx="1"/><rect x="13" y="4" width="8" height="3" rx="1"/>
    <rect x="6" y="10.5" width="11" height="3" rx="1"/><rect x="3" y="17" width="5" height="3" rx="1"/>
    <rect x="10" y="17" width="11" height="3" rx="1"/>
  </g>
</svg>`;

export const candleIcon = new LabIcon({ name: 'candle-lab:icon', svgstr: ICON_SVG });

/** One experiment as the REST API lists it. */
export interface IExperiment {
  id: string;
  name: string;
  state: string;
  trials: number;
  completed: number;
  failed: number;
  running: number;
  best: number | null;
  progress: number | null;
  max_trials: number | null;
  /** The objective's metric and whether lower or higher is better. */
  metric?: string;
  direction?: 'minimize' | 'maximize';
  algorithm?: string;
  /** Seconds from the first trial queued to the last one's end (or now); null before any. */
  duration?: number | null;
}

/** GET/POST a route of the server extension; errors carry the server's message. */
async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'candle-lab', 'api', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data.message || response.statusText);
  }
  return data as T;
}

function dashboardUrl(experiment?: string): string {
  const base = URLExt.join(PageConfig.getBaseUrl(), 'candle-lab-app') + '/';
  return experiment ? `${base}?experiment=${encodeURIComponent(experiment)}` : base;
}

/** The Panel app in an iframe (same origin: the Jupyter server's login covers it). */
class DashboardFrame extends IFrame {
  constructor(url: string) {
    super({
      sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-downloads', 'allow-popups'],
      referrerPolicy: 'same-origin'
    });
    this.url = url;
    this.addClass('candle-lab-dashboard');
  }
}

/** The best objective to 4 significant figures, without trailing zeros (0.07031, 1.5). */
export function formatBest(best: number | null): string {
  return best === null || best === undefined ? '–' : String(Number(Number(best).toPrecision(4)));
}

/** "best val_loss ↓ 0.07031": the metric, ↓ when minimized or ↑ when maximized, the best. */
export function formatObjective(e: IExperiment): string {
  const arrow = e.direction === 'maximize' ? '↑' : '↓';
  return e.metric ? `best ${e.metric} ${arrow} ${formatBest(e.best)}` : `best ${formatBest(e.best)}`;
}

/** A duration in seconds as "5.2 s", "3.1 min" or "2.4 h". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  return seconds < 3600 ? `${(seconds / 60).toFixed(1)} min` : `${(seconds / 3600).toFixed(1)} h`;
}

/** The experiment's HTML report, written by the server extension when out of date. */
export function reportUrl(experiment: string): string {
  return URLExt.join(PageConfig.getBaseUrl(), 'candle-lab', 'api', 'experiments', encodeURIComponent(experiment),
                     'report');
}

/** The left sidebar: experiments with state, progress, best, search and a report link, refreshed live. */
class ExperimentsSidebar extends Widget {
  private list: HTMLUListElement;
  private status: HTMLDivElement;
  private timer: number | undefined;
  private refreshMs = 3000;

  constructor(private readonly open: (id: string) => void, newExperiment: () => void) {
    super();
    this.id = 'candle-lab-experiments';
    this.title.icon = candleIcon;
    this.title.caption = 'CANDLE Lab experiments';
    this.addClass('candle-lab-sidebar');
    const header = document.createElement('div');
    header.className = 'candle-lab-sidebar-header';
    const title = document.createElement('h2');
    title.textContent = 'CANDLE Lab';
    const button = document.createElement('button');
    button.className = 'jp-mod-styled jp-mod-accept candle-lab-new';
    button.textContent = 'New experiment';
    button.onclick = () => newExperiment();
    header.append(title, button);
    this.status = document.createElement('div');
    this.status.className = 'candle-lab-sidebar-status';
    this.list = document.createElement('ul');
    this.list.className = 'candle-lab-experiment-list';
    this.node.append(header, this.status, this.list);
  }

  setInterval(seconds: number): void {
    this.refreshMs = Math.max(1, seconds) * 1000;
    this.schedule();
  }

  protected onAfterAttach(): void {
    void this.refresh();
    this.schedule();
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    window.clearInterval(this.timer);
    if (this.isAttached) {
      this.timer = window.setInterval(() => void this.refresh(), this.refreshMs);
    }
  }

  async refresh(): Promise<void> {
    let experiments: IExperiment[];
    try {
      experiments = (await requestAPI<{ experiments: IExperiment[] }>('experiments')).experiments;
    } catch (error) {
      this.status.textContent = `cannot list experiments: ${(error as Error).message}`;
      return;
    }
    this.status.textContent = experiments.length ? '' : 'No experiments yet.';
    this.list.replaceChildren(...experiments.reverse().map(e => this.item(e)));
  }

  private item(e: IExperiment): HTMLLIElement {
    const li = document.createElement('li');
    li.className = 'candle-lab-experiment';
    li.dataset.id = e.id;
    li.dataset.state = e.state;
    li.title = `Open the dashboard of ${e.id}`;
    const head = document.createElement('div');
    head.className = 'candle-lab-experiment-head';
    const id = document.createElement('span');
    id.className = 'candle-lab-experiment-id';
    id.textContent = e.id;
    const state = document.createElement('span');
    state.className = `candle-lab-state candle-lab-state-${e.state}`;
    state.textContent = e.state;
    head.append(id, state);
    const name = document.createElement('div');
    name.className = 'candle-lab-experiment-name';
    name.textContent = e.name;
    const progress = document.createElement('progress');
    progress.max = 1;
    progress.value = e.progress ?? 0;
    const counts = document.createElement('div');
    counts.className = 'candle-lab-experiment-counts';
    const budget = e.max_trials ? `/${e.max_trials}` : '';
    const done = e.completed + e.failed;
    counts.textContent = `${done}${budget} trials · ${e.running} running · ${formatObjective(e)}`;
    const meta = document.createElement('div');
    meta.className = 'candle-lab-experiment-meta';
    const search = document.createElement('span');
    search.className = 'candle-lab-experiment-search';
    const duration = e.duration === null || e.duration === undefined ? [] : [formatDuration(e.duration)];
    search.textContent = [e.algorithm || '', ...duration].filter(Boolean).join(' · ');
    const report = document.createElement('a');
    report.className = 'candle-lab-report';
    report.href = reportUrl(e.id);
    report.target = '_blank';
    report.rel = 'noopener';
    report.textContent = 'report';
    report.title = `Open the HTML report of ${e.id} in a new browser tab`;
    report.onclick = event => event.stopPropagation(); // the link only, not the item's dashboard tab
    meta.append(search, report);
    li.append(head, name, progress, counts, meta);
    li.onclick = () => this.open(e.id);
    return li;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'CANDLE Lab: hyperparameter optimization experiments in JupyterLab.',
  autoStart: true,
  optional: [ILauncher, ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settings: ISettingRegistry | null
  ) => {
    const tracker = new WidgetTracker<MainAreaWidget<DashboardFrame>>({ namespace: 'candle-lab' });

    const openTab = (experiment?: string): MainAreaWidget<DashboardFrame> => {
      const key = experiment ?? 'new';
      const existing = tracker.find(w => w.id === `candle-lab-${key}`);
      if (existing) {
        app.shell.activateById(existing.id);
        return existing;
      }
      const widget = new MainAreaWidget({ content: new DashboardFrame(dashboardUrl(experiment)) });
      widget.id = `candle-lab-${key}`;
      widget.title.label = experiment ? `CANDLE Lab: ${experiment}` : 'CANDLE Lab';
      widget.title.icon = candleIcon;
      widget.title.closable = true;
      void tracker.add(widget);
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
      return widget;
    };

    const sidebar = new ExperimentsSidebar(
      id => void app.commands.execute(CommandIDs.openDashboard, { id }),
      () => void app.commands.execute(CommandIDs.newExperiment)
    );
    app.shell.add(sidebar, 'left', { rank: 850 });

    app.commands.addCommand(CommandIDs.newExperiment, {
      label: args => (args.isLauncher ? 'CANDLE Lab' : 'New CANDLE Lab experiment'),
      caption: 'Define a model, a search space and a compute job, and run the search',
      icon: candleIcon,
      execute: () => openTab()
    });
    app.commands.addCommand(CommandIDs.openDashboard, {
      label: args => (args.id ? `Open CANDLE Lab dashboard of ${args.id}` : 'Open CANDLE Lab dashboard'),
      icon: candleIcon,
      execute: args => openTab(args.id ? String(args.id) : undefined)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh CANDLE Lab experiments',
      execute: () => sidebar.refresh()
    });
    app.commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show CANDLE Lab experiments',
      execute: () => app.shell.activateById(sidebar.id)
    });

    if (launcher) {
      launcher.add({ command: CommandIDs.newExperiment, category: 'Other', rank: 0 });
    }
    if (palette) {
      for (const command of [CommandIDs.newExperiment, CommandIDs.refresh, CommandIDs.showSidebar]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
    if (restorer) {
      restorer.add(sidebar, 'candle-lab-experiments');
      void restorer.restore(tracker, {
        command: CommandIDs.openDashboard,
        args: w => ({ id: w.id === 'candle-lab-new' ? '' : w.id.replace(/^candle-lab-/, '') }),
        name: w => w.id
      });
    }
    if (settings) {
      void settings.load(PLUGIN_ID).then(s => {
        const apply = () => sidebar.setInterval(s.get('refreshSeconds').composite as number);
        apply();
        s.changed.connect(apply);
      });
    }
  }
};

export default plugin;
