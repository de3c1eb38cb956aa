using System.CommandLine;
using System.Globalization;
using System.Text;
using Shoal.Cluster;
using Shoal.Journal;
using Shoal.Running;

namespace Shoal.Cli;

/// <summary><c>shoal submit TASKFILE [run options] -- [sbatch options]</c>: on a login node, writes a batch script
/// that runs <c>shoal run TASKFILE --continue</c> into the run directory, submits it, prints the job id. Nothing
/// stays running on the login node: each job submits the next while tasks are left.</summary>
internal static class SubmitCommand
{
    private static readonly Argument<string[]> Arguments = new("TASKFILE [run options] -- [sbatch options]") { Description = "What shoal run takes, then after -- what sbatch takes (e.g. -N 4 --time=2:00:00 -p batch)", Arity = ArgumentArity.ZeroOrMore };

    public static Command Create()
    {
        var command = new Command("submit", "Submit a run as a chain of SLURM jobs: each runs what fits in its time and submits the next until every task has ended")
        {
            Arguments,
        };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction((parse, _) => ExecuteAsync(parse));
        return command;
    }

    private static async Task<int> ExecuteAsync(ParseResult parse)
    {
        var tokens = parse.Tokens.SkipWhile(t => t.Value != "submit").Skip(1).ToList();
        var split = tokens.FindIndex(t => t.Type == System.CommandLine.Parsing.TokenType.DoubleDash);
        var runArgs = (split < 0 ? tokens : tokens.Take(split)).Select(t => t.Value).ToArray();
        var sbatchArgs = split < 0 ? [] : tokens.Skip(split + 1).Select(t => t.Value).ToArray();
        if (runArgs.Contains("-") || runArgs.Contains("--continue"))
        {
            return Cli.Fail("shoal submit: the task file must be a file (not stdin), and --continue is implied");
        }

        if (sbatchArgs.FirstOrDefault(a => a.Any(char.IsWhiteSpace) || a.Contains('#', StringComparison.Ordinal)) is { } odd)
        {
            return Cli.Fail($"shoal submit: sbatch option '{odd}' has spaces or '#'; write your own batch script for it (see README: continuing in the next job)");
        }

        // The run's options are checked now, on the login node, not in a job that waits in the queue first.
        var check = new RootCommand { RunCommand.Create() }.Parse(["run", .. runArgs, "--continue"]);
        if (check.Errors.Count > 0)
        {
            return Cli.Fail($"shoal submit: {check.Errors[0].Message}");
        }

        using var runDir = new RunDirectory(RunCommand.CheckForSubmit(check));
        if (runDir.Path.Any(c => char.IsWhiteSpace(c) || c is '%' or '"' or '\''))
        {
            return Cli.Fail($"shoal submit: the run directory {runDir.Path} has a space, quote or '%' (sbatch would split or expand it); choose one with --run-dir");
        }

        // One chain at a time: not while a run holds the directory, nor while its last job waits or runs.
        runDir.Acquire(); // throws (exit 2, clear message) when a run uses it
        if (File.Exists(runDir.JournalPath))
        {
            using var journal = RunJournal.Open(runDir.JournalPath, create: false, readOnly: true);
            if (journal.Chain().LastOrDefault(c => c.Job is not null) is { Job: { } last } && await SlurmJob.StateAsync(last, Path.Combine(Path.GetTempPath(), $"shoal-squeue-{Environment.ProcessId}")).ConfigureAwait(false) is not null)
            {
                return Cli.Fail($"shoal submit: job {last} of this run is still queued or running (scancel {last} first, or choose another --run-dir)");
            }
        }

        try
        {
            Directory.CreateDirectory(runDir.JobsDirectory);
            var temporary = runDir.BatchScript + ".new";
            await File.WriteAllTextAsync(temporary, BatchScript(runDir, runArgs, sbatchArgs)).ConfigureAwait(false);
            File.Move(temporary, runDir.BatchScript, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Cli.Fail($"shoal submit: cannot write {runDir.BatchScript}: {Cli.Describe(e)}");
        }
        var by = string.Create(CultureInfo.InvariantCulture, $"submit:{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}");
        var (job, error) = await SlurmJob.SubmitAsync(runDir.BatchScript, [], null, Path.Combine(runDir.JobsDirectory, $".sbatch-{Environment.ProcessId}")).ConfigureAwait(false);
        using (var journal = RunJournal.Open(runDir.JournalPath, create: true))
        {
            journal.ClaimSubmission(by, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            journal.RecordSubmission(by, job, error);
        }

        if (job is null)
        {
            await Console.Error.WriteLineAsync($"shoal: error: {error}").ConfigureAwait(false);
            return Cli.SomeFailed;
        }

        await Console.Error.WriteLineAsync($"shoal: submitted job {job} ({runDir.BatchScript}); it goes on in further jobs until every task has ended; follow it with: shoal status {runDir.Path}").ConfigureAwait(false);
        await Console.Out.WriteLineAsync(job).ConfigureAwait(false);
        return Cli.Ok;
    }

    private static string BatchScript(RunDirectory runDir, string[] runArgs, string[] sbatchArgs)
    {
        var text = new StringBuilder();
        text.Append("#!/bin/bash\n");
        if (!sbatchArgs.Any(a => a is "-J" || a.StartsWith("--job-name", StringComparison.Ordinal)))
        {
            text.Append(CultureInfo.InvariantCulture, $"#SBATCH --job-name=shoal-{Path.GetFileName(runDir.Path).Replace(".shoal", "", StringComparison.Ordinal)}\n");
        }

        if (!sbatchArgs.Any(a => a is "-o" || a.StartsWith("--output", StringComparison.Ordinal)))
        {
            text.Append(CultureInfo.InvariantCulture, $"#SBATCH --output={runDir.JobsDirectory}/slurm-%j.out\n");
        }

        // One #SBATCH line per option with its values (-N 2 stays together).
        var line = new List<string>();
        foreach (var arg in sbatchArgs)
        {
            if (arg.StartsWith('-') && line.Count > 0)
            {
                text.Append("#SBATCH ").AppendJoin(' ', line).Append('\n');
                line.Clear();
            }

            line.Add(arg);
        }

        if (line.Count > 0)
        {
            text.Append("#SBATCH ").AppendJoin(' ', line).Append('\n');
        }

        text.Append(CultureInfo.InvariantCulture, $"# Written by shoal submit at {DateTimeOffset.Now:yyyy-MM-dd HH:mm:ss zzz}. Each job runs what fits in its time; while tasks are\n");
        text.Append("# left, shoal submits this script again (--continue). Follow the chain: shoal status RUN_DIR\n");
        text.Append(CultureInfo.InvariantCulture, $"cd {Quote(Environment.CurrentDirectory)} || exit 1\n");
        text.Append("exec ").AppendJoin(' ', SlurmLeader.SelfCommand().Select(Quote)).Append(" run ").AppendJoin(' ', runArgs.Select(Quote)).Append(" --continue\n");
        return text.ToString();
    }

    /// <summary>Single-quoted for sh, unless plainly safe.</summary>
    public static string Quote(string s) =>
        s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=:,@%+".Contains(c, StringComparison.Ordinal))
            ? s
            : "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
