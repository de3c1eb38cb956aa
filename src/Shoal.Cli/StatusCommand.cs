using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Shoal.Cluster;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Reporting;
using Shoal.Running;
using Shoal.Tasks;

namespace Shoal.Cli;

/// <summary><c>shoal status [RUN_DIR]</c>: where a run stands, from any shell, while it runs or after.</summary>
internal static class StatusCommand
{
    private static readonly Argument<string?> Dir = new("RUN_DIR") { Description = "The run directory (default: $SHOAL_RUN_DIR, or the one *.shoal folder here)", Arity = ArgumentArity.ZeroOrOne };
    private static readonly Option<bool> Watch = new("--watch", "-w") { Description = "Refresh every 2 seconds until the run ends" };
    private static readonly Option<string> Output = new("--output", "-o") { Description = "text or json", DefaultValueFactory = _ => "text" };

    public static Command Create()
    {
        Output.AcceptOnlyFromAmong("text", "json");
        var command = new Command("status", "Counts, throughput, ETA, per-worker utilisation and the longest-running tasks of a run") { Dir, Watch, Output };
        command.SetAction((parse, cancellationToken) => ExecuteAsync(parse, cancellationToken));
        return command;
    }

    private static async Task<int> ExecuteAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        var runDir = RunDirLocator.Find(parse.GetValue(Dir));
        var json = parse.GetValue(Output) == "json";
        var watch = parse.GetValue(Watch) && !json;
        while (true)
        {
            RunStatus status;
            using (var journal = RunJournal.Open(runDir.JournalPath, create: false, readOnly: true))
            {
                status = RunStatus.Read(journal, runDir.Path, IsActive(runDir), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            }

            if (json)
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(ToJson(status), ShoalJson.Default.StatusJson));
                return Cli.Ok;
            }

            if (watch && !Console.IsOutputRedirected)
            {
                Console.Out.Write("\x1b[H\x1b[2J");
            }

            Write(Console.Out, status);
            if (!watch || !status.Active)
            {
                return Cli.Ok;
            }

            try
            {
                await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return Cli.Ok;
            }
        }
    }

    /// <summary>A run holds the folder's lock while it runs.</summary>
    private static bool IsActive(RunDirectory runDir)
    {
        try
        {
            using var probe = new FileStream(runDir.LockPath, FileMode.Open, FileAccess.Read, FileShare.None);
            return false;
        }
        catch (IOException)
        {
            return File.Exists(runDir.LockPath);
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    internal static void Write(TextWriter o, RunStatus s)
    {
        o.WriteLine($"{s.Origin}: {(s.Active ? "running" : "not running")} ({s.RunDir})");
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {s.Total} tasks: {s.Done} done, {s.Failed} failed, {s.Running} running, {s.Interrupted} interrupted, {s.NotStarted} not started"));
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  throughput: {s.RecentRate:0.0} tasks/s in the last {RunStatus.RecentWindow.TotalSeconds:0} s, {s.OverallRate:0.0} tasks/s over the latest run{(s.Eta is { } eta ? $"; ETA {Duration.Format(eta)}" : "")}"));
        foreach (var w in s.Workers)
        {
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  worker {w.Id} {w.Host}: {w.Slots} slots, {w.Running} running, {w.Utilisation * 100:0.#}% busy"));
        }

        if (s.LongestRunning.Count > 0)
        {
            o.WriteLine("  longest running: " + string.Join(", ", s.LongestRunning.Select(l => $"{l.TaskId} on {l.Host} for {Duration.Format(l.Elapsed)}")));
        }

        if (s.JobEnd is { } end)
        {
            var left = DateTimeOffset.FromUnixTimeMilliseconds(end) - DateTimeOffset.UtcNow;
            o.WriteLine($"  job ends in {Duration.Format(left < TimeSpan.Zero ? TimeSpan.Zero : left)} (at {DateTimeOffset.FromUnixTimeMilliseconds(end).ToLocalTime():yyyy-MM-dd HH:mm:ss})");
        }

        foreach (var step in new[] { NodeStep.Setup, NodeStep.Teardown })
        {
            var rows = s.NodeSteps.Where(n => n.Result.Step == step).ToList();
            if (rows.Count > 0)
            {
                var bad = rows.Where(n => !n.Result.Succeeded && n.Result.Error != NodeStepResult.Stopped).ToList();
                var stopped = rows.Count(n => n.Result.Error == NodeStepResult.Stopped);
                o.WriteLine($"  node {(step == NodeStep.Setup ? "setup" : "teardown")}: {rows.Count - bad.Count - stopped} ok, {bad.Count} failed{(stopped > 0 ? $", {stopped} stopped by the run's stop" : "")}{(bad.Count == 0 ? "" : $" ({string.Join("; ", bad.Select(b => $"{b.Host}: {b.Result.Describe()}"))})")}");
            }
        }

        if (s.Barriers.Count > 0)
        {
            o.WriteLine("  barriers: " + string.Join(", ", s.Barriers.Select(b => $"line {b.Line} {(b.Stopped ? "stopped the run (stop-on-failure)" : "passed")}{(b.Failed > 0 ? $" with {b.Failed} failed above" : "")} at {DateTimeOffset.FromUnixTimeMilliseconds(b.At).ToLocalTime():HH:mm:ss}")));
        }

        foreach (var r in s.Releases)
        {
            o.WriteLine($"  node {r.Host} (worker {r.Worker}) {(r.Error is null ? "handed back to SLURM" : "could not be handed back: " + r.Error)} at {DateTimeOffset.FromUnixTimeMilliseconds(r.At).ToLocalTime():HH:mm:ss}");
        }

        if (s.Chain.Count > 0)
        {
            var jobs = s.Chain.Where(c => c.Job is not null).Select(c => c.Job!).ToList();
            var last = jobs.LastOrDefault();
            var state = last is null ? null : SlurmJob.StateAsync(last, Path.Combine(Path.GetTempPath(), $"shoal-squeue-{Environment.ProcessId}")).GetAwaiter().GetResult() is { } st ? "is " + st.ToLowerInvariant() : null;
            o.WriteLine($"  jobs: {string.Join(", ", jobs)}{(last is null ? "" : $"; job {last} {state ?? "has ended"}")}; {s.Total - s.Done - s.Failed} tasks left");
            foreach (var failed in s.Chain.Where(c => c.Error is not null))
            {
                o.WriteLine($"  submission by {failed.By} failed: {failed.Error}");
            }
        }
    }

    private static StatusJson ToJson(RunStatus s) => new(
        s.RunDir, s.Origin, s.Active, s.Total, s.Done, s.Failed, s.Running, s.Interrupted, s.NotStarted,
        Math.Round(s.RecentRate, 3), Math.Round(s.OverallRate, 3), s.Eta?.TotalSeconds,
        [.. s.Workers.Select(w => new WorkerJson(w.Id, w.Host, w.Slots, w.Running, Math.Round(w.Utilisation, 4)))],
        [.. s.LongestRunning.Select(l => new RunningJson(l.TaskId, l.Host, Math.Round(l.Elapsed.TotalSeconds, 3)))],
        [.. s.NodeSteps.Select(n => new NodeStepJson(n.Session, n.Worker, n.Host, n.Result.Step == NodeStep.Setup ? "setup" : "teardown", n.Result.Succeeded, n.Result.Status >= 0 ? n.Result.Status : null, n.Result.Status < 0 ? -n.Result.Status : null, n.Result.TimedOut, n.Result.Error, n.Result.StartUnixMs, Math.Round(n.Result.DurationMs / 1000.0, 3), n.Result.Log))]);
}

internal sealed record WorkerJson(int Id, string Host, int Slots, int Running, double Utilisation);

internal sealed record RunningJson(int Id, string Host, double Seconds);

internal sealed record NodeStepJson(int Session, int Worker, string Host, string Step, bool Ok, int? ExitCode, int? Signal, bool TimedOut, string? Error, long Started, double DurationSeconds, string Log);

internal sealed record StatusJson(string RunDir, string Origin, bool Active, int Total, int Done, int Failed, int Running, int Interrupted, int NotStarted, double RecentTasksPerSecond, double OverallTasksPerSecond, double? EtaSeconds, WorkerJson[] Workers, RunningJson[] LongestRunning, NodeStepJson[] NodeSteps);
