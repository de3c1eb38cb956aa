using System.Collections.Concurrent;
using System.Text;
using Shoal.Cluster;
using Shoal.Journal;
using Shoal.Running;
using Shoal.Tasks;

namespace Shoal.Tests.Support;

/// <summary>A real leader in this process: run directory, journal, run loop and the listening <see cref="SlurmLeader"/>
/// (no srun: tests connect their own workers to <see cref="Port"/>).</summary>
public sealed class InProcessLeader : IAsyncDisposable
{
    private InProcessLeader(RunJournal journal, JournalWriter writer, RunLoop loop, SlurmLeader leader, ConcurrentQueue<string> log)
    {
        Log = log;
        Journal = journal;
        Writer = writer;
        Loop = loop;
        Leader = leader;
    }

    public RunJournal Journal { get; }

    /// <summary>What the leader logged (rejected connections, workers joining and lost).</summary>
    public ConcurrentQueue<string> Log { get; }

    public JournalWriter Writer { get; }

    public RunLoop Loop { get; }

    public SlurmLeader Leader { get; }

    public int Port => Leader.Port;

    public byte[] Secret => Leader.Secret;

    /// <summary>A task file of <paramref name="n"/> tasks that each append their id to done.log in <paramref name="dir"/>.</summary>
    public static string EchoTasks(TempDir dir, int n)
    {
        ArgumentNullException.ThrowIfNull(dir);
        return string.Concat(Enumerable.Range(0, n).Select(_ => $"echo $SHOAL_TASK_ID >> {dir.File("done.log")}\n"));
    }

    public static InProcessLeader Start(TempDir dir, string taskFile, RunOptions? options = null, string? leaderAddress = null)
    {
        ArgumentNullException.ThrowIfNull(dir);
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes(taskFile), "t");
        var runDir = new RunDirectory(dir.File("run"));
        runDir.Acquire();
        var journal = RunJournal.Open(runDir.JournalPath, create: true);
        var session = journal.BeginSession(0, "test", 1, "test");
        var writer = new JournalWriter(journal);
        var loop = new RunLoop(tasks, (options ?? new RunOptions()) with { Session = session }, journal, writer, TimeProvider.System);
        var allocation = new SlurmAllocation("1", ["a", "b"], [2, 2], 0, null, null);
        var log = new ConcurrentQueue<string>();
        var leader = new SlurmLeader(allocation, loop, writer, runDir, session, "/bin/sh", quiet: true, leaderAddress, log.Enqueue);
        try
        {
            leader.Listen();
        }
        catch
        {
            leader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            writer.Dispose();
            journal.Dispose();
            throw;
        }

        return new InProcessLeader(journal, writer, loop, leader, log);
    }

    public async ValueTask DisposeAsync()
    {
        await Leader.DisposeAsync();
        Writer.Dispose();
        Journal.Dispose();
    }
}
