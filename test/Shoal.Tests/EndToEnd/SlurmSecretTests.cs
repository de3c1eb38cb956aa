namespace Shoal.Tests.EndToEnd;

/// <summary>The run's secret inside a real two-node SLURM job: no environment a task can read holds it.</summary>
[Collection("slurm")]
public sealed class SlurmSecretTests : IDisposable
{
    private readonly Support.TempDir _dir = new();

    public SlurmSecretTests(SlurmCluster cluster) => Assert.NotNull(cluster);

    [Fact]
    public async Task BatchJob_TasksSearchEveryEnvironTheyCanRead_FindNoSecret_RunSucceeds()
    {
        // Jobs run as root here, so a task can read every process's environ on its node. It looks for the variable
        // by name everywhere, and for a value shaped like the secret (base64 of 32 bytes) in every process of this
        // job: the batch step's leader and srun, slurmstepd, the worker (its parent), itself.
        File.WriteAllText(_dir.File("check.sh"), """
            hits=""; scanned=0; srun=no; worker=no
            env | grep -q SHOAL_SECRET && hits+=" own-env:name"
            env | grep -qE '^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9+/]{43}=$' && hits+=" own-env:value"
            for d in /proc/[0-9]*; do
              e=$(tr '\0' '\n' <$d/environ 2>/dev/null) || continue
              [ -n "$e" ] || continue
              scanned=$((scanned + 1))
              grep -q 'SHOAL_SECRET' <<<"$e" && hits+=" $d:name"
              if grep -qx "SLURM_JOB_ID=$SLURM_JOB_ID" <<<"$e"; then
                grep -qE '^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9+/]{43}=$' <<<"$e" && hits+=" $d:value"
                cmd=$(tr '\0' ' ' <$d/cmdline 2>/dev/null)
                case "$cmd" in *srun\ *\ worker\ --leader\ *) srun=yes ;; esac
              fi
            done
            p=$$
            while [ "$p" -gt 1 ]; do
              tr '\0' ' ' </proc/$p/cmdline | grep -q ' worker --leader ' && tr '\0' '\n' </proc/$p/environ | grep -q '^SLURM_JOB_ID=' && worker=yes
              p=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f2)
            done
            echo "$SHOAL_TASK_ID $(hostname) scanned=$scanned srun=$srun worker=$worker hits:$hits" >> result.log
            """);
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 8).Select(_ => $"cd {_dir.Path} && bash check.sh; sleep 0.5\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4");
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("8 succeeded, 0 failed", output, StringComparison.Ordinal);
        var results = File.ReadAllLines(_dir.File("result.log")).Select(l => l.Split(' ')).ToList();
        Assert.Equal(8, results.Count);
        Assert.Equal(["node1", "node2"], results.Select(r => r[1]).Distinct().Order());
        Assert.All(results, r => Assert.Equal("srun=yes", r[3])); // the leader's srun, which used to carry SHOAL_SECRET, was read
        Assert.All(results, r => Assert.Equal("worker=yes", r[4]));
        Assert.All(results, r => Assert.Equal("hits:", string.Join(' ', r[5..])));
    }

    public void Dispose() => _dir.Dispose();
}
