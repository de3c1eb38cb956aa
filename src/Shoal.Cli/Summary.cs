using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Shoal.Running;
using Shoal.Tasks;

namespace Shoal.Cli;

/// <summary>The end-of-run summary: plain text for people, JSON for scripts.</summary>
internal static class Summary
{
    public static void WriteText(TextWriter output, RunOutcome o, string runDir)
    {
        var rate = o.Elapsed.TotalSeconds > 0 ? (o.Succeeded + o.Failed) / o.Elapsed.TotalSeconds : 0;
        var before = o.AlreadyDone + o.AlreadyFailed > 0 ? $" ({o.AlreadyDone} succeeded and {o.AlreadyFailed} failed in earlier runs)" : "";
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"shoal: {o.Total} tasks: {o.Succeeded} succeeded, {o.Failed} failed, {o.Interrupted} interrupted, {o.NotRun} not run{before}; {Duration.Format(o.Elapsed)}, {rate:0.0} tasks/s"));
        if (o.SpawnFailures > 0)
        {
            output.WriteLine($"shoal: {o.SpawnFailures} starts failed for lack of resources on the machine (not the tasks' fault) and were retried");
        }

        if (o.SpawnError is not null)
        {
            output.WriteLine($"shoal: {o.SpawnError}; run the same command again to finish");
        }

        if (o.OutOfTime)
        {
            output.WriteLine($"shoal: out of time: {o.NotRun} tasks could not finish before the job's end and did not start; {(o.NextJob is { } next ? $"job {next} goes on with them" : "run the same command in a new job to go on (exit 75)")}");
        }
        else if (o.StopSignal != 0 && o.NextJob is { } next)
        {
            output.WriteLine($"shoal: stopped by signal {o.StopSignal} at the job's time limit; job {next} goes on (finished tasks are not rerun)");
        }
        else if (o.StopSignal != 0)
        {
            output.WriteLine($"shoal: stopped by signal {o.StopSignal}; run the same command again to resume (finished tasks are not rerun)");
        }

        if (o.StoppedAtBarrier is var (line, failedAbove))
        {
            output.WriteLine($"shoal: stopped at the barrier on line {line} (stop-on-failure): {failedAbove} task(s) above it failed{(o.NotRun > 0 ? $"; the {o.NotRun} task(s) below did not start" : "")} (fix them and run again with --retry-failed)");
        }

        if (o.SetupFailures > 0 && !o.SetupFailedEverywhere)
        {
            output.WriteLine($"shoal: node setup failed on {o.SetupFailures} node(s); their share ran elsewhere (shoal nodes {runDir})");
        }

        if (o.Failed + o.AlreadyFailed > 0)
        {
            if (o.FirstFailures.Count > 0)
            {
                var list = string.Join(", ", o.FirstFailures.Select(f => $"{f.TaskId} ({Describe(f.Status, f.TimedOut)})"));
                output.WriteLine($"shoal: {o.Failed + o.AlreadyFailed} failed, first: {list}");
            }

            output.WriteLine($"shoal: list them: shoal list --state failed -r {runDir}    output: shoal cat ID --stderr -r {runDir}");
            if (o.AlreadyFailed > 0)
            {
                output.WriteLine("shoal: tasks that failed in earlier runs are not rerun without --retry-failed");
            }
        }
    }

    public static string Describe(int status, bool timedOut) =>
        timedOut ? "timed out" : status < 0 ? $"signal {-status}" : $"exit {status}";

    public static void WriteJson(TextWriter output, RunOutcome o, string runDir)
    {
        var summary = new RunSummaryJson(
            o.Total,
            o.Succeeded,
            o.Failed,
            o.Interrupted,
            o.NotRun,
            o.AlreadyDone,
            o.AlreadyFailed,
            Math.Round(o.Elapsed.TotalSeconds, 3),
            o.StopSignal,
            o.ExitCode,
            runDir,
            [.. o.FirstFailures.Select(f => new FailureJson(f.TaskId, f.Status >= 0 && !f.TimedOut ? f.Status : null, f.Status < 0 ? -f.Status : null, f.TimedOut))],
            o.OutOfTime,
            o.End?.ToUnixTimeSeconds(),
            o.NextJob,
            o.StoppedAtBarrier?.Line,
            o.SetupFailures);
        output.WriteLine(JsonSerializer.Serialize(summary, ShoalJson.Default.RunSummaryJson));
    }
}

internal sealed record FailureJson(int Id, int? ExitCode, int? Signal, bool TimedOut);

internal sealed record RunSummaryJson(
    int Total,
    int Succeeded,
    int Failed,
    int Interrupted,
    int NotRun,
    int SucceededBefore,
    int FailedBefore,
    double ElapsedSeconds,
    int StopSignal,
    int ExitCode,
    string RunDir,
    FailureJson[] FirstFailures,
    bool OutOfTime,
    long? JobEndUnixSeconds,
    string? NextJob,
    int? StoppedAtBarrierLine,
    int SetupFailures);

internal sealed record AttemptJson(int Id, int Attempt, string State, int? ExitCode, int? Signal, long Started, double DurationSeconds, string Host, string Command);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = false)]
[JsonSerializable(typeof(RunSummaryJson))]
[JsonSerializable(typeof(AttemptJson[]))]
[JsonSerializable(typeof(StatusJson))]
internal sealed partial class ShoalJson : JsonSerializerContext;
