using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Shoal.Journal;

namespace Shoal.Cli;

/// <summary><c>shoal list</c>: the latest attempt of every task that ran, optionally only those in one state.</summary>
internal static class ListCommand
{
    private static readonly Option<string?> State = new("--state") { Description = "Only tasks whose latest attempt is: done, failed, running, interrupted" };
    private static readonly Option<string?> Node = new("--node") { Description = "Only tasks whose latest attempt ran on this host" };
    private static readonly Option<string> Output = new("--output", "-o") { Description = "text, json or csv", DefaultValueFactory = _ => "text" };
    private static readonly Option<string?> RunDir = new("--run-dir", "-r") { Description = "The run directory (default: $SHOAL_RUN_DIR, or the one *.shoal folder here)" };

    public static Command Create()
    {
        State.AcceptOnlyFromAmong("done", "failed", "running", "interrupted");
        Output.AcceptOnlyFromAmong("text", "json", "csv");
        var command = new Command("list", "List tasks with their state, exit code, attempts and duration") { State, Node, Output, RunDir };
        command.SetAction(parse => Execute(parse));
        return command;
    }

    private static int Execute(ParseResult parse)
    {
        var runDir = RunDirLocator.Find(parse.GetValue(RunDir));
        using var journal = RunJournal.Open(runDir.JournalPath, create: false, readOnly: true);
        AttemptState[]? states = parse.GetValue(State) switch
        {
            "done" => [AttemptState.Succeeded],
            "failed" => [AttemptState.Failed, AttemptState.TimedOut],
            "running" => [AttemptState.Running],
            "interrupted" => [AttemptState.Interrupted],
            _ => null,
        };
        var rows = journal.LatestAttempts(states);
        var hosts = new Dictionary<(int, int), string>();
        string Host(AttemptRecord a)
        {
            if (!hosts.TryGetValue((a.Session, a.Worker), out var h))
            {
                h = journal.Worker(a.Session, a.Worker)?.Host ?? "?";
                hosts[(a.Session, a.Worker)] = h;
            }

            return h;
        }

        if (parse.GetValue(Node) is { } node)
        {
            rows = [.. rows.Where(a => Host(a) == node)];
        }

        var output = Console.Out;
        switch (parse.GetValue(Output))
        {
            case "json":
                var json = rows.Select(a => new AttemptJson(a.TaskId, a.Attempt, Name(a.State), a.Status >= 0 ? a.Status : null, a.Status < 0 ? -a.Status : null, a.StartUnixMs, a.DurationMs / 1000.0, Host(a), "")).ToArray();
                output.WriteLine(JsonSerializer.Serialize(json, ShoalJson.Default.AttemptJsonArray));
                break;
            case "csv":
                output.WriteLine("id,state,exit_code,signal,attempts,duration_s,host");
                foreach (var a in rows)
                {
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{a.TaskId},{Name(a.State)},{(a.Status >= 0 ? a.Status : "")},{(a.Status < 0 ? -a.Status : "")},{a.Attempt},{a.DurationMs / 1000.0:0.###},{Host(a)}"));
                }

                break;
            default:
                output.WriteLine($"{"ID",8}  {"STATE",-11}  {"RESULT",-10}  {"ATTEMPTS",8}  {"DURATION",9}  HOST");
                foreach (var a in rows)
                {
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{a.TaskId,8}  {Name(a.State),-11}  {Summary.Describe(a.Status, a.State == AttemptState.TimedOut),-10}  {a.Attempt,8}  {a.DurationMs / 1000.0,8:0.000}s  {Host(a)}"));
                }

                break;
        }

        return Cli.Ok;
    }

    private static string Name(AttemptState s) => s switch
    {
        AttemptState.Succeeded => "done",
        AttemptState.Failed => "failed",
        AttemptState.TimedOut => "timed-out",
        AttemptState.Interrupted => "interrupted",
        _ => "running",
    };
}
