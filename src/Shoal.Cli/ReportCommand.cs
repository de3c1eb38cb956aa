using System.CommandLine;
using System.Text;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Reporting;

namespace Shoal.Cli;

/// <summary><c>shoal report [RUN_DIR] -o report.html</c>: one self-contained HTML file about a run.</summary>
internal static class ReportCommand
{
    private const int TailBytes = 1024;
    private static readonly Argument<string?> Dir = new("RUN_DIR") { Description = "The run directory (default: $SHOAL_RUN_DIR, or the one *.shoal folder here)", Arity = ArgumentArity.ZeroOrOne };
    private static readonly Option<string> Output = new("--output", "-o") { Description = "Where to write the HTML file", DefaultValueFactory = _ => "report.html" };

    public static Command Create()
    {
        var command = new Command("report", "Write a self-contained HTML report: timeline of slots, utilisation, durations, failures, settings") { Dir, Output };
        command.SetAction(parse => Execute(parse));
        return command;
    }

    private static int Execute(ParseResult parse)
    {
        var runDir = RunDirLocator.Find(parse.GetValue(Dir));
        using var journal = RunJournal.Open(runDir.JournalPath, create: false, readOnly: true);
        var sessions = journal.Sessions();
        var workers = journal.Workers();
        var total = int.TryParse(journal.GetMeta("tasks.count"), out var t) ? t : 0;
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var model = ReportModel.Build(journal.EachAttempt(), journal.ReportExtent(now), workers, sessions, total, now);
        var prefixes = workers.ToDictionary(w => (w.Session, w.Id), w => w.LogPrefix);
        var tails = new Dictionary<int, string>();
        foreach (var a in model.Failures.Take(100))
        {
            if (prefixes.TryGetValue((a.Session, a.Worker), out var prefix))
            {
                tails[a.TaskId] = Tail(runDir.LaneLog(a.Session, prefix, a.Lane, stderr: true, a.Log), a.ErrOffset, a.ErrLength);
            }
        }

        var html = HtmlReport.Render(model, runDir.Path, journal.GetMeta("tasks.origin") ?? "?", sessions, workers, tails, DateTimeOffset.UtcNow, journal.SessionJobs(), journal.Releases(), journal.NodeSteps(), journal.Barriers());
        var path = parse.GetValue(Output)!;
        try
        {
            File.WriteAllText(path, html, new UTF8Encoding(false));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Cli.Fail($"cannot write {path}: {Cli.Describe(e)}");
        }

        Console.Error.WriteLine($"shoal: wrote {path} ({model.Attempts} attempts, {model.Lanes.Count} slots{(model.Detailed ? "" : ", aggregated")})");
        return Cli.Ok;
    }

    private static string Tail(string path, long offset, long length)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var take = (int)Math.Min(TailBytes, length);
            var buffer = new byte[take];
            file.Seek(offset + length - take, SeekOrigin.Begin);
            file.ReadExactly(buffer);
            return (take < length ? "…" : "") + Encoding.UTF8.GetString(buffer);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"(output not readable: {e.Message})";
        }
    }
}
