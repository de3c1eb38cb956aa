namespace Shoal.Tests.Support;

public static class Repository
{
    /// <summary>The folder holding Shoal.slnx above the test binaries, or null outside a checkout.</summary>
    public static string? Root { get; } = Find();

    private static string? Find()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Shoal.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName;
    }
}
