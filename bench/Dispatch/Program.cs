using System.Diagnostics;
using System.Globalization;
using System.Text;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Running;
using Shoal.Tasks;

// The leader's dispatch rate without process costs: the real run loop, scheduler and SQLite journal, with W
// in-process workers whose launcher reports every task finished the moment it is handed over.
// Usage: dotnet run -c Release --project bench/Dispatch -- [TASKS=1000000] [WORKERS=64,1000] [SLOTS_PER_WORKER=16] [BARRIER_EVERY=0]
// (BARRIER_EVERY=K puts a '#SHOAL barrier' line after every K tasks: the cost of phases.)
if (args.Length > 0 && args[0] == "tcp")
{
    await TcpBench.RunAsync(args[1..]);
    return;
}

var tasks = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1_000_000;
var workerCounts = (args.Length > 1 ? args[1] : "1,64,1000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
var slots = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 16;
var barrierEvery = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 0;
var text = new StringBuilder(tasks * 6);
for (var i = 1; i <= tasks; i++)
{
    text.Append("true\n");
    if (barrierEvery > 0 && i % barrierEvery == 0 && i < tasks)
    {
        text.Append("#SHOAL barrier\n");
    }
}

var file = Encoding.ASCII.GetBytes(text.ToString());
Console.WriteLine($"| workers × slots | tasks | seconds | dispatched tasks/s |");
Console.WriteLine("|---|---|---|---|");
foreach (var workers in workerCounts)
{
    // KEEP_JOURNAL=DIR: the run's journal stays in DIR (a run directory `shoal status DIR` reads: bench/startup).
    var keep = Environment.GetEnvironmentVariable("KEEP_JOURNAL");
    var dir = keep is { Length: > 0 } ? Directory.CreateDirectory(keep) : Directory.CreateTempSubdirectory("shoal-dispatch-");
    try
    {
        var list = TaskSources.FromTaskFile(file, "bench");
        using var journal = RunJournal.Open(Path.Combine(dir.FullName, "journal.db"), create: true);
        if (keep is { Length: > 0 })
        {
            journal.SetMeta(new Dictionary<string, string> { ["tasks.count"] = tasks.ToString(CultureInfo.InvariantCulture), ["tasks.origin"] = "bench", ["tasks.fingerprint"] = list.Fingerprint(list.Count) });
            var session = journal.BeginSession(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), "bench", Environment.ProcessId, "bench/Dispatch");
            for (var w = 0; w < workers; w++)
            {
                journal.AddWorker(session, w, $"n{w}", slots, "", $"w{w}-");
            }
        }

        using var writer = new JournalWriter(journal);
        var loop = new RunLoop(list, new RunOptions(), journal, writer, TimeProvider.System);
        for (var w = 0; w < workers; w++)
        {
            loop.AddWorker(new WorkerInfo(w, $"n{w}", slots, []), new InstantLauncher(w, loop.ExitSink));
        }

        loop.ExpectNoMoreWorkers();
        var clock = Stopwatch.StartNew();
        var outcome = await loop.RunAsync();
        writer.Complete();
        clock.Stop();
        if (outcome.Succeeded != tasks)
        {
            throw new InvalidOperationException($"only {outcome.Succeeded} of {tasks} succeeded");
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {workers} × {slots} | {tasks} | {clock.Elapsed.TotalSeconds:0.00} | {tasks / clock.Elapsed.TotalSeconds:0} |"));
    }
    finally
    {
        if (keep is not { Length: > 0 })
        {
            dir.Delete(recursive: true);
        }
    }
}

internal sealed class InstantLauncher(int worker, Action<TaskExit> exitSink) : ITaskLauncher
{
    public void Launch(LaunchRequest request) =>
        exitSink(new TaskExit(request.Task, request.Attempt, 0, 0, 0, 0, request.Lane, 0, 0, 0, 0, worker));

    public void Signal(int task, int signal)
    {
    }

    public void Dispose()
    {
    }
}
