using System.CommandLine;
using System.Globalization;
using Shoal.Execution;
using Shoal.Journal;

namespace Shoal.Cli;

/// <summary><c>shoal cat ID</c>: the stdout (or stderr) of a task's latest attempt, byte for byte.</summary>
internal static class CatCommand
{
    private static readonly Argument<int> Id = new("ID") { Description = "Task id (the line number in the task file)" };
    private static readonly Option<bool> Stderr = new("--stderr", "-e") { Description = "Print the task's stderr instead of its stdout" };
    private static readonly Option<int?> Attempt = new("--attempt") { Description = "Which attempt (default: the latest)" };
    private static readonly Option<string?> RunDir = new("--run-dir", "-r") { Description = "The run directory (default: $SHOAL_RUN_DIR, or the one *.shoal folder here)" };

    public static Command Create()
    {
        var command = new Command("cat", "Print the output a task wrote") { Id, Stderr, Attempt, RunDir };
        command.SetAction(parse => Execute(parse));
        return command;
    }

    private static int Execute(ParseResult parse)
    {
        var runDir = RunDirLocator.Find(parse.GetValue(RunDir));
        using var journal = RunJournal.Open(runDir.JournalPath, create: false, readOnly: true);
        var id = parse.GetValue(Id);
        var attempts = journal.Attempts(id);
        if (attempts.Count == 0)
        {
            return Cli.Fail($"task {id} has not run in {runDir.Path}");
        }

        var wanted = parse.GetValue(Attempt);
        var a = wanted is { } which ? attempts.Find(x => x.Attempt == which) : attempts[^1];
        if (a == default)
        {
            return Cli.Fail($"task {id} has no attempt {wanted} (it has {string.Join(", ", attempts.Select(x => x.Attempt))})");
        }

        var stderr = parse.GetValue(Stderr);
        var worker = journal.Worker(a.Session, a.Worker);
        if (worker is null)
        {
            return Cli.Fail($"the journal has no worker {a.Worker} for session {a.Session}");
        }

        var path = runDir.LaneLog(a.Session, worker.Value.LogPrefix, a.Lane, stderr, a.Log);
        var (offset, length) = stderr ? (a.ErrOffset, a.ErrLength) : (a.OutOffset, a.OutLength);
        if (a.State == AttemptState.Running)
        {
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"shoal: task {id} attempt {a.Attempt} is running (or was when its run stopped); its output is not indexed yet, see {path}"));
            return Cli.Ok;
        }

        using var stdout = Console.OpenStandardOutput();
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        file.Seek(offset, SeekOrigin.Begin);
        var buffer = new byte[64 * 1024];
        while (length > 0)
        {
            var n = file.Read(buffer, 0, (int)Math.Min(buffer.Length, length));
            if (n == 0)
            {
                return Cli.Fail($"{path} is shorter than the journal says (truncated?)");
            }

            stdout.Write(buffer, 0, n);
            length -= n;
        }

        return Cli.Ok;
    }
}
