using Shoal.Cluster;

namespace Shoal.Tests.Cluster;

public class HostlistTests
{
    [Theory]
    [InlineData("node1", "node1")]
    [InlineData("node[1-3]", "node1 node2 node3")]
    [InlineData("node[01-04,07]", "node01 node02 node03 node04 node07")]
    [InlineData("gpu-a[1-2],login5", "gpu-a1 gpu-a2 login5")]
    [InlineData("nid[00008-00010]", "nid00008 nid00009 nid00010")]
    [InlineData("node[098-101]", "node098 node099 node100 node101")]
    [InlineData("rack[1-2]-n[01-02]", "rack1-n01 rack1-n02 rack2-n01 rack2-n02")]
    [InlineData("a[1,3],b,c[10-11]", "a1 a3 b c10 c11")]
    [InlineData("cn-[9-10].cluster", "cn-9.cluster cn-10.cluster")]
    [InlineData("x[7]", "x7")]
    [InlineData("node1,node2", "node1 node2")]
    public void Expand_RealWorldForms(string list, string expected) =>
        Assert.Equal(expected.Split(' '), Hostlist.Expand(list));

    [Theory]
    [InlineData("node[1-")]
    [InlineData("node1-3]")]
    [InlineData("node[a-b]")]
    [InlineData("node[5-2]")]
    [InlineData("node[[1-2]]")]
    [InlineData("node[1-2000000]")]
    public void Expand_Malformed_Throws(string list) => Assert.Throws<FormatException>(() => Hostlist.Expand(list));

    [Theory]
    [InlineData("36(x2),12", new[] { 36, 36, 12 })]
    [InlineData("8", new[] { 8 })]
    [InlineData("4,4,2(x3)", new[] { 4, 4, 2, 2, 2 })]
    [InlineData("128(x1)", new[] { 128 })]
    public void ExpandCounts_CpusPerNodeForms(string text, int[] expected) => Assert.Equal(expected, Hostlist.ExpandCounts(text));

    [Theory]
    [InlineData("36(x)")]
    [InlineData("36(2)")]
    [InlineData("x,4")]
    [InlineData("4(x0)")]
    public void ExpandCounts_Malformed_Throws(string text) => Assert.Throws<FormatException>(() => Hostlist.ExpandCounts(text));

    [Theory]
    [InlineData("node1 node2 node3", "node[1-3]")]
    [InlineData("node01 node02 node04 login", "node[01-02],node04,login")]
    public void Compress_RoundTrips(string hosts, string expected)
    {
        var list = hosts.Split(' ');
        Assert.Equal(expected, Hostlist.Compress(list));
        Assert.Equal(list, Hostlist.Expand(expected));
    }

    [Fact]
    public void FromEnvironment_ReadsTheAllocation()
    {
        var env = new Dictionary<string, string>
        {
            ["SLURM_JOB_ID"] = "4242",
            ["SLURM_JOB_NODELIST"] = "c[01-02],g7",
            ["SLURM_JOB_CPUS_PER_NODE"] = "36(x2),12",
            ["SLURM_GPUS_ON_NODE"] = "4",
            ["SLURM_NTASKS"] = "3",
        };
        var a = SlurmAllocation.FromEnvironment(k => env.GetValueOrDefault(k))!;
        Assert.Equal(["c01", "c02", "g7"], a.Nodes);
        Assert.Equal([36, 36, 12], a.CpusPerNode);
        Assert.Equal(4, a.GpusPerNode);
        Assert.Equal("SLURM job 4242: 3 nodes c[01-02],g7, CPUs per node 36,36,12, GPUs per node 4, ntasks 3", a.Describe());
        Assert.Null(SlurmAllocation.FromEnvironment(_ => null));
    }

    [Fact]
    public void FromEnvironment_MismatchedCounts_NamesTheVariable()
    {
        var env = new Dictionary<string, string> { ["SLURM_JOB_ID"] = "1", ["SLURM_JOB_NODELIST"] = "n[1-3]", ["SLURM_JOB_CPUS_PER_NODE"] = "4,4" };
        var e = Assert.Throws<FormatException>(() => SlurmAllocation.FromEnvironment(k => env.GetValueOrDefault(k)));
        Assert.Contains("SLURM_JOB_CPUS_PER_NODE", e.Message, StringComparison.Ordinal);
    }
}
