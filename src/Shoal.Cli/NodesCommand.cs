using System.CommandLine;
using System.Globalization;
using Shoal.Execution;
using Shoal.Journal;

namespace Shoal.Cli;

/// <summary><c>shoal nodes [RUN_DIR]</c>: every worker of every session, with its node's setup, teardown and hand-back.</summary>
internal static class NodesCommand
{
    private static readonly string[] Header = ["SESSION", "WORKER", "HOST", "SLOTS", "GPUS", "SETUP", "TEARDOWN", "RELEASED"];
    private static readonly Argument<string?> Dir = new("RUN_DIR") { Description = "The run directory (default: $SHOAL_RUN_DIR, or the one *.shoal folder here)", Arity = ArgumentArity.ZeroOrOne };

    public static Command Create()
    {
        var command = new Command("nodes", "The nodes (workers) of each session: slots, GPUs, how their setup and teardown went, when they were handed back") { Dir };
        command.SetAction(parse => Execute(parse));
        return command;
    }

    private static int Execute(ParseResult parse)
    {
        var runDir = RunDirLocator.Find(parse.GetValue(Dir));
        using var journal = RunJournal.Open(runDir.JournalPath, create: false, readOnly: true);
        var steps = journal.NodeSteps().ToDictionary(s => (s.Session, s.Worker, s.Result.Step), s => s.Result);
        var releases = journal.Releases().ToDictionary(r => (r.Session, r.Worker));
        var rows = new List<string[]> { Header };
        foreach (var w in journal.Workers().OrderBy(w => w.Session).ThenBy(w => w.Id))
        {
            string Step(NodeStep step) => steps.TryGetValue((w.Session, w.Id, step), out var r) ? r.Describe() : "-";
            var released = releases.TryGetValue((w.Session, w.Id), out var rel)
                ? rel.Error is null ? DateTimeOffset.FromUnixTimeMilliseconds(rel.At).ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture) : "failed: " + rel.Error
                : "-";
            rows.Add([w.Session.ToString(CultureInfo.InvariantCulture), w.Id.ToString(CultureInfo.InvariantCulture), w.Host, w.Slots.ToString(CultureInfo.InvariantCulture), w.Gpus.Length == 0 ? "-" : w.Gpus, Step(NodeStep.Setup), Step(NodeStep.Teardown), released]);
        }

        var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (var row in rows)
        {
            Console.Out.WriteLine(string.Join("  ", row.Select((cell, c) => c == row.Length - 1 ? cell : cell.PadRight(widths[c]))).TrimEnd());
        }

        foreach (var failed in steps.Values.Where(s => !s.Succeeded && s.Log.Length > 0))
        {
            var last = failed.LastLine;
            Console.Out.WriteLine($"{(failed.Step == NodeStep.Setup ? "setup" : "teardown")} output: {failed.Log}{(last is null ? "" : $" (ends: {last})")}");
        }

        return Cli.Ok;
    }
}
