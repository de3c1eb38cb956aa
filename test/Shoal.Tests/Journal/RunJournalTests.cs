using Microsoft.Data.Sqlite;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.Journal;

public sealed class RunJournalTests : IDisposable
{
    private readonly TempDir _dir = new();

    private string JournalPath => _dir.File("journal.db");

    [Fact]
    public void Write_ThenReopen_ReadsTheRowsBack()
    {
        using (var journal = RunJournal.Open(JournalPath, create: true))
        {
            var session = journal.BeginSession(1000, "host", 42, "run t");
            journal.Write([
                new AttemptRecord(3, 1, AttemptState.Failed, 2, 1000, 50, session, 0, 1, 0, 10, 0, 5),
                new AttemptRecord(3, 2, AttemptState.Succeeded, 0, 1100, 60, session, 0, 1, 10, 4, 5, 0),
                new AttemptRecord(5, 1, AttemptState.Running, 0, 1200, 0, session, 0, 0, 0, 0, 0, 0),
            ]);
        }

        using var again = RunJournal.Open(JournalPath, create: false);
        Assert.Equal(1, again.MarkRunningInterrupted());
        var latest = new Dictionary<int, (int, AttemptState)>();
        again.ReadLatest((t, a, s, _) => latest[t] = (a, s));
        Assert.Equal((2, AttemptState.Succeeded), latest[3]);
        Assert.Equal((1, AttemptState.Interrupted), latest[5]);
        Assert.Equal(new AttemptRecord(3, 2, AttemptState.Succeeded, 0, 1100, 60, 1, 0, 1, 10, 4, 5, 0), again.Attempts(3)[1]);
    }

    [Fact]
    public void Open_NewerSchema_IsRefusedWithAClearMessage()
    {
        RunJournal.Open(JournalPath, create: true).Dispose(); // also sets SQLite up for the connection below
        using (var c = new SqliteConnection($"Data Source={JournalPath};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "PRAGMA user_version = 99";
            cmd.ExecuteNonQuery();
        }

        var e = Assert.Throws<JournalException>(() => RunJournal.Open(JournalPath, create: true));
        Assert.Contains("newer Shoal (journal schema 99", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_GarbageFile_IsRefusedAndLeftUntouched()
    {
        var garbage = new byte[8192];
        new Random(1).NextBytes(garbage);
        File.WriteAllBytes(JournalPath, garbage);

        var e = Assert.Throws<JournalException>(() => RunJournal.Open(JournalPath, create: true));
        Assert.Contains("is not a usable Shoal journal", e.Message, StringComparison.Ordinal);
        Assert.Equal(garbage, File.ReadAllBytes(JournalPath));
    }

    [Fact]
    public void Open_TruncatedJournal_IsRefused()
    {
        using (var journal = RunJournal.Open(JournalPath, create: true))
        {
            var session = journal.BeginSession(1, "h", 1, "a");
            journal.Write([.. Enumerable.Range(1, 5000).Select(i => new AttemptRecord(i, 1, AttemptState.Succeeded, 0, i, 1, session, 0, 0, 0, 0, 0, 0))]);
        }

        var bytes = File.ReadAllBytes(JournalPath);
        File.WriteAllBytes(JournalPath, bytes[..(bytes.Length / 3)]);

        Assert.Throws<JournalException>(() =>
        {
            using var j = RunJournal.Open(JournalPath, create: true);
            j.ReadLatest((_, _, _, _) => { });
        });
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void LatestStateCounts_CountsEachTaskByItsLatestAttemptOnly()
    {
        using var journal = RunJournal.Open(JournalPath, create: true);
        var session = journal.BeginSession(1000, "h", 1, "run");
        journal.Write([
            new AttemptRecord(1, 1, AttemptState.Failed, 2, 1000, 50, session, 0, 0, 0, 0, 0, 0),
            new AttemptRecord(1, 2, AttemptState.Succeeded, 0, 1100, 50, session, 0, 0, 0, 0, 0, 0),
            new AttemptRecord(2, 1, AttemptState.Succeeded, 0, 1000, 50, session, 0, 1, 0, 0, 0, 0),
            new AttemptRecord(3, 1, AttemptState.Succeeded, 0, 1000, 50, session, 0, 1, 0, 0, 0, 0),
            new AttemptRecord(3, 2, AttemptState.Interrupted, 0, 1200, 0, session, 0, 1, 0, 0, 0, 0),
            new AttemptRecord(4, 1, AttemptState.Failed, 1, 1000, 50, session, 0, 0, 0, 0, 0, 0),
            new AttemptRecord(4, 3, AttemptState.Failed, 1, 1300, 50, session, 0, 0, 0, 0, 0, 0),
            new AttemptRecord(4, 2, AttemptState.Running, 0, 1200, 0, session, 0, 0, 0, 0, 0, 0),
        ]);

        var (byState, tasks) = journal.LatestStateCounts();

        Assert.Equal(4, tasks);
        Assert.Equal(2, byState[AttemptState.Succeeded]);
        Assert.Equal(1, byState[AttemptState.Interrupted]);
        Assert.Equal(1, byState[AttemptState.Failed]);
        Assert.False(byState.ContainsKey(AttemptState.Running));
    }
}
